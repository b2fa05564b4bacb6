// Position attributes of every thread, for 2-D grids with partial threadgroups on both edges.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import XCTest

final class PositionTests: XCTestCase {
    /// PositionRecord of positions.metal: 24 uint32 fields.
    static let fields = 24

    private func record(width: Int, height: Int, nonuniform: Bool) throws -> [[UInt32]] {
        let gpu = GPU.shared
        let group = MTLSize(width: 8, height: 4, depth: 1)
        let out = gpu.buffer(count: width * height * Self.fields, fill: UInt32(0))
        var w = UInt32(width)
        let cb = try gpu.run { enc in
            enc.setComputePipelineState(try gpu.pipeline("positions.metal", "record_positions"))
            enc.setBuffer(out, offset: 0, index: 0)
            enc.setBytes(&w, length: 4, index: 1)
            if nonuniform {
                enc.dispatchThreads(MTLSize(width: width, height: height, depth: 1), threadsPerThreadgroup: group)
            } else {
                enc.dispatchThreadgroups(MTLSize(width: width / 8, height: height / 4, depth: 1),
                                         threadsPerThreadgroup: group)
            }
        }
        XCTAssertCompleted(cb)
        let flat = gpu.read(out, as: UInt32.self, count: width * height * Self.fields)
        return (0..<width * height).map { Array(flat[$0 * Self.fields..<($0 + 1) * Self.fields]) }
    }

    private func expected(x: Int, y: Int, width: Int, height: Int) -> [UInt32] {
        let tg = (x / 8, y / 4)
        let local = (x % 8, y % 4)
        let size = (min(8, width - tg.0 * 8), min(4, height - tg.1 * 4))
        let index = local.0 + local.1 * size.0
        let r: [Int] = [
            x, y, 0, // thread_position_in_grid
            tg.0, tg.1, 0, // threadgroup_position_in_grid
            local.0, local.1, 0, // thread_position_in_threadgroup
            size.0, size.1, 1, // threads_per_threadgroup (the partial size at the edges)
            ceilDiv(width, 8), ceilDiv(height, 4), 1, // threadgroups_per_grid
            width, height, 1, // threads_per_grid
            index, index % 32, index / 32, 32, ceilDiv(size.0 * size.1, 32),
            1, // written exactly once
        ]
        return r.map { UInt32($0) }
    }

    func testPartialThreadgroupsInBothDimensions() throws {
        let width = 37, height = 11
        let records = try record(width: width, height: height, nonuniform: true)
        for y in 0..<height {
            for x in 0..<width {
                let want = expected(x: x, y: y, width: width, height: height)
                XCTAssertEqual(records[y * width + x], want, "thread (\(x), \(y))")
                if records[y * width + x] != want { return }
            }
        }
    }

    func testUniformGrid() throws {
        let width = 40, height = 12
        let records = try record(width: width, height: height, nonuniform: false)
        for y in 0..<height {
            for x in 0..<width {
                XCTAssertEqual(records[y * width + x], expected(x: x, y: y, width: width, height: height))
            }
        }
    }
}
