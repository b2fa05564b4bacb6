// Replays every committed fuzz input (tests/fuzz/corpus/<target>/) through the targets the fuzzer runs
// (Sources/MambaMetal/FuzzTargets.swift): the seeds, and each input that once crashed, hung or
// over-allocated in a parser (crash-*, hang-*, alloc-*), so a fixed bug stays fixed. A target that
// traps stops this test process, which fails the run. `deno task fuzz` finds new ones.
import Foundation
import XCTest
@testable import MambaMetal

private let root = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
private let corpus = root.appendingPathComponent("tests/fuzz/corpus")

private func inputs(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
    let dir = corpus.appendingPathComponent(target)
    return try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted().map {
        ($0, Array(try Data(contentsOf: dir.appendingPathComponent($0))))
    }
}

private func replay(_ target: FuzzTarget, _ bytes: [UInt8]) -> MambaFailure? {
    bytes.withUnsafeBytes { FuzzTargets.run(target, $0) }
}

final class FuzzRegressionTests: XCTestCase {
    override func setUp() {
        FuzzTargets.stateModelDirectory = root.appendingPathComponent("tests/fuzz/state-model").path
    }

    func testEveryTargetHasSeeds() throws {
        let folders = try FileManager.default.contentsOfDirectory(atPath: corpus.path)
        XCTAssertEqual(Set(folders), Set(FuzzTargets.all.map(\.name)), "one seed folder per fuzz target")
        for t in FuzzTargets.all {
            let files = try inputs(t.name)
            XCTAssertFalse(files.filter { $0.name.hasPrefix("seed-") }.isEmpty, "\(t.name) has no seeds")
            for f in files { XCTAssertLessThanOrEqual(f.bytes.count, t.maxLength, "\(t.name)/\(f.name) > max_len") }
        }
    }

    /// Every input ends in acceptance or a MambaFailure; a crash, trap or sanitizer report ends the process.
    func testEveryCommittedInputIsHandled() throws {
        var count = 0
        for t in FuzzTargets.all {
            for f in try inputs(t.name) {
                _ = replay(t, f.bytes)
                count += 1
            }
        }
        XCTAssertGreaterThan(count, 60)
    }

    /// The seeds of the whole-model targets are valid models and states, so fuzzing starts deep inside.
    func testModelAndStateSeedsAreAccepted() throws {
        for name in ["checkpoint", "state", "safetensors", "config", "gguf", "gguf-model"] {
            let t = try XCTUnwrap(FuzzTargets.named(name))
            for f in try inputs(name) where f.name.hasPrefix("seed-") {
                XCTAssertNil(replay(t, f.bytes), "\(name)/\(f.name) was refused")
            }
        }
    }

    /// Inputs that once crashed a parser, hung, or made it allocate far more than the file justifies
    /// (crash-*, hang-*, alloc-*) are now refused with a message.
    func testFoundInputsAreRefused() throws {
        var count = 0
        for t in FuzzTargets.all {
            for f in try inputs(t.name) where ["crash-", "hang-", "alloc-"].contains(where: f.name.hasPrefix) {
                let failure = replay(t, f.bytes)
                XCTAssertNotNil(failure, "\(t.name)/\(f.name) was accepted")
                XCTAssertFalse(failure?.message.isEmpty ?? true, "\(t.name)/\(f.name)")
                count += 1
            }
        }
        XCTAssertGreaterThan(count, 0)
    }
}
