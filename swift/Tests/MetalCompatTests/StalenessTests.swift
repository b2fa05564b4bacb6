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

    /// The library source of a .metal file: its `#include "x.h"` lines replaced by the headers beside it, as
    /// tools/metal_bindings/include.ts writes them (if the two ever differ, the hashes differ and this fails).
    private func librarySource(_ url: URL) throws -> String {
        let dir = url.deletingLastPathComponent()
        var out: [String] = []
        for (i, line) in try String(contentsOf: url, encoding: .utf8).components(separatedBy: "\n").enumerated() {
            let t = line.trimmingCharacters(in: .whitespaces)
            guard t.hasPrefix("#include \""), let close = t.dropFirst(10).firstIndex(of: "\"") else {
                out.append(line)
                continue
            }
            let header = String(t[t.index(t.startIndex, offsetBy: 10)..<close])
            var body = try librarySource(dir.appendingPathComponent(header))
            if body.hasSuffix("\n") { body.removeLast() }
            out += ["#line 1 \"metal/\(header)\"", body, "#line \(i + 2) \"metal/\(url.lastPathComponent)\""]
        }
        return out.joined(separator: "\n")
    }

    func testProductionKernelsOnDiskAreCompiled() throws {
        // swift/Tests/MetalCompatTests -> repository root -> metal/
        let metal = root.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("metal")
        for url in metalFiles(metal) {
            let source = try librarySource(url)
            XCTAssertNoThrow(try GPU.shared.device.makeLibrary(source: source, options: nil), url.lastPathComponent)
        }
    }
}
