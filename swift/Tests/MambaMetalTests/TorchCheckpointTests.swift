// Checks readTorchCheckpoint against files made by tools/make_torch_fixtures.py (real torch.save output
// plus hand-made broken archives), and that damaged input fails with an error instead of trapping.
import Foundation
import XCTest
@testable import MambaMetal

private let fixtures = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("tests/fixtures/torch")

private struct Expected: Decodable {
    struct Tensor: Decodable {
        let name: String
        let dtype: String
        let shape: [Int]
        let sum: Double
        let first: [Double]
        let fnv1a64: String
        let group: Int
        let offset_bytes: Int
    }
    struct Failure: Decodable {
        let kind: String
        let contains: [String]
    }
    let tensors: [Tensor]?
    let error: Failure?
}

private func loadExpected() throws -> [String: Expected] {
    let data = try Data(contentsOf: fixtures.appendingPathComponent("expected.json"))
    return try JSONDecoder().decode([String: Expected].self, from: data)
}

private func values(_ v: TensorView) -> [Double] {
    (0 ..< v.elementCount).map { i in
        switch v.dtype {
        case .f32: return Double(v.data.loadUnaligned(fromByteOffset: 4 * i, as: Float.self))
        case .bf16:
            let bits = UInt32(v.data.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16
            return Double(Float(bitPattern: bits))
        case .f16: return halfToDouble(v.data.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
        }
    }
}

// Float16 is not available on every platform Swift runs the tests on (macOS x86_64), so decode by hand.
private func halfToDouble(_ h: UInt16) -> Double {
    let sign: Double = h & 0x8000 != 0 ? -1 : 1
    let exponent = Int(h >> 10 & 0x1F), mantissa = Double(h & 0x3FF)
    switch exponent {
    case 0: return sign * mantissa * 0x1p-24
    case 31: return mantissa == 0 ? sign * .infinity : .nan
    default: return sign * (1 + mantissa / 1024) * Double(sign: .plus, exponent: exponent - 15, significand: 1)
    }
}

private func fnv1a64(_ v: TensorView) -> String {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in UnsafeRawBufferPointer(start: v.data, count: v.byteCount) { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    let hex = String(h, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
}

private func kindName(_ k: MambaStatus) -> String {
    switch k {
    case .format: return "format"
    case .unsupported: return "unsupported"
    case .io: return "io"
    default: return "\(k)"
    }
}

final class TorchCheckpointTests: XCTestCase {
    func testFixturesMatchTorch() throws {
        let expected = try loadExpected()
        XCTAssertGreaterThan(expected.count, 10)
        for (file, expect) in expected.sorted(by: { $0.key < $1.key }) {
            let path = fixtures.appendingPathComponent(file).path
            if let failure = expect.error {
                do {
                    let views = try readTorchCheckpoint(path: path)
                    XCTFail("\(file): expected a \(failure.kind) error, read \(views.count) tensors")
                } catch let e as MambaFailure {
                    XCTAssertEqual(kindName(e.kind), failure.kind, "\(file): \(e.message)")
                    XCTAssertTrue(e.message.hasPrefix(path), "\(file): message does not name the file: \(e.message)")
                    for s in failure.contains {
                        XCTAssertTrue(e.message.contains(s), "\(file): '\(s)' missing from: \(e.message)")
                    }
                }
                continue
            }
            let views = try readTorchCheckpoint(path: path)
            let tensors = expect.tensors ?? []
            XCTAssertEqual(views.map(\.name), tensors.map(\.name), file)
            guard views.count == tensors.count else { continue }
            var groupStart: [Int: (UnsafeRawPointer, Int)] = [:]
            for (v, t) in zip(views, tensors) {
                let label = "\(file): \(t.name)"
                XCTAssertEqual(v.dtype.rawValue, t.dtype, label)
                XCTAssertEqual(v.shape, t.shape, label)
                XCTAssertEqual(fnv1a64(v), t.fnv1a64, label)
                let vals = values(v)
                XCTAssertEqual(Array(vals.prefix(4)), t.first, label)
                let sum = vals.reduce(0, +), scale = vals.reduce(1) { $0 + abs($1) }
                XCTAssertEqual(sum, t.sum, accuracy: 1e-12 * scale, label)
                // Views of one storage must keep their relative placement: same bytes, not copies.
                if let (ptr, offset) = groupStart[t.group] {
                    XCTAssertEqual(v.data - ptr, t.offset_bytes - offset, "\(label) moved within its storage")
                } else {
                    groupStart[t.group] = (v.data, t.offset_bytes)
                }
                XCTAssertTrue(v.file.bytes(v.data - v.file.base, v.byteCount) != nil, "\(label) outside the file")
            }
        }
    }

    func testEveryFixtureIsDescribed() throws {
        let expected = try loadExpected()
        let files = try FileManager.default.contentsOfDirectory(atPath: fixtures.path).filter { $0.hasSuffix(".pt") }
        XCTAssertEqual(Set(files), Set(expected.keys))
    }

    func testStorageAlignmentOfTorchFiles() throws {
        // torch aligns storages to 64 bytes, which the engine relies on for vector loads.
        for v in try readTorchCheckpoint(path: fixtures.appendingPathComponent("dtypes.pt").path) {
            XCTAssertEqual(Int(bitPattern: v.data) % v.dtype.byteSize, 0, v.name)
        }
        let tied = try readTorchCheckpoint(path: fixtures.appendingPathComponent("tied.pt").path)
        XCTAssertEqual(tied.count, 2)
        XCTAssertEqual(tied.first?.data, tied.last?.data)
        XCTAssertEqual((Int(bitPattern: tied[0].data) - Int(bitPattern: tied[0].file.base)) % 64, 0)
    }

    func testMissingFileIsAnIOError() {
        XCTAssertThrowsError(try readTorchCheckpoint(path: fixtures.appendingPathComponent("nope.pt").path)) {
            XCTAssertEqual(($0 as? MambaFailure)?.kind, .io)
        }
    }

    func testTruncatedFilesFailCleanly() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in ["dtypes.pt", "zip64.pt"] {
            let data = try Data(contentsOf: fixtures.appendingPathComponent(name))
            for length in stride(from: 1, to: data.count, by: 5) {
                let path = dir.appendingPathComponent("\(length).pt")
                try data.prefix(length).write(to: path)
                XCTAssertThrowsError(try readTorchCheckpoint(path: path.path), "\(name) cut at \(length)") {
                    XCTAssertTrue($0 is MambaFailure)
                }
            }
        }
    }

    func testCorruptedFilesNeverTrap() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var rng = SplitMix(seed: 1)
        for name in ["module_state_dict.pt", "zip64.pt"] {
            let original = try Data(contentsOf: fixtures.appendingPathComponent(name))
            for i in 0 ..< 300 {
                var data = original
                for _ in 0 ... rng.next() % 4 {
                    data[Int(rng.next() % UInt64(data.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
                let path = dir.appendingPathComponent("\(i).pt")
                try data.write(to: path)
                do { _ = try readTorchCheckpoint(path: path.path) } catch { XCTAssertTrue(error is MambaFailure) }
            }
        }
    }

    func testMutatedPicklesNeverTrap() throws {
        let file = try MappedFile(path: fixtures.appendingPathComponent("module_state_dict.pt").path)
        let zip = try ZipDirectory(file: file)
        guard let entry = zip.entries.first(where: { $0.name.hasSuffix("/data.pkl") }) else {
            return XCTFail("no data.pkl")
        }
        let pickle = Array(try zip.contents(of: entry))
        XCTAssertNoThrow(try pickle.withUnsafeBytes { try unpickle($0, source: "whole") })
        for length in 0 ..< pickle.count {
            let prefix = Array(pickle.prefix(length))
            XCTAssertThrowsError(try prefix.withUnsafeBytes { try unpickle($0, source: "cut") })
        }
        var rng = SplitMix(seed: 2)
        for _ in 0 ..< 5000 {
            var bytes = pickle
            for _ in 0 ... rng.next() % 3 {
                bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
            }
            _ = try? bytes.withUnsafeBytes { try unpickle($0, source: "mutated") }
        }
    }

    func testPickleRejectsUnknownOpcodeWithOffset() {
        let bytes: [UInt8] = [0x80, 0x02, 0x7D, 0x49, 0x31, 0x0A, 0x2E] // PROTO 2, EMPTY_DICT, INT (text)
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try unpickle($0, source: "x.pkl") }) {
            let message = ($0 as? MambaFailure)?.message ?? ""
            XCTAssertTrue(message.contains("opcode 0x49") && message.contains("byte 3"), message)
        }
    }

    private func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("torch-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}

/// A small deterministic generator, so a failing mutation can be reproduced.
private struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
