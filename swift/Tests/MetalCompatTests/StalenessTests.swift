// The compiled kernels must match the .metal sources on disk: a kernel edited without rerunning
// `deno task gen:metal` (and rebuilding) fails here (tests/metal_bindings.test.ts checks the generated
// files themselves).
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif
import Foundation
import XCTest

final class StalenessTests: XCTestCase {
    private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent() // Tests/MetalCompatTests

    private func metalFiles(_ dir: URL) -> [URL] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        return names.filter { $0.hasSuffix(".metal") }.sorted().map { dir.appendingPathComponent($0) }
    }

    func testTestKernelsOnDiskAreTheCompiledOnes() throws {
        let files = metalFiles(root.appendingPathComponent("Kernels"))
        XCTAssertFalse(files.isEmpty)
        XCTAssertEqual(files.map(\.lastPathComponent), TestKernelSources.files.map(\.name))
        for url in files {
            let source = try String(contentsOf: url, encoding: .utf8)
            XCTAssertEqual(source, TestKernelSources.source(named: url.lastPathComponent), "\(url.lastPathComponent)")
            XCTAssertNoThrow(try GPU.shared.device.makeLibrary(source: source, options: nil), url.lastPathComponent)
        }
    }

    func testProductionKernelsOnDiskAreCompiled() throws {
        // swift/Tests/MetalCompatTests -> repository root -> metal/
        let metal = root.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("metal")
        for url in metalFiles(metal) {
            let source = try String(contentsOf: url, encoding: .utf8)
            XCTAssertNoThrow(try GPU.shared.device.makeLibrary(source: source, options: nil), url.lastPathComponent)
        }
    }
}
