// Engines on several threads at once: the CPU backend's thread pool inside each engine, MetalCompat's
// workers shared by every Metal engine, and state saved on one thread and loaded on another. Each
// thread's logits must equal a run of the same tokens alone. Meant for ThreadSanitizer
// (tools/sanitize.ts), and a plain check of thread-independence otherwise.
import Foundation
import XCTest
@testable import MambaMetal

private let fixture = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("tests/fixtures/tiny-g1").path

private func engine(_ options: String) throws -> Engine {
    try Engine(directory: fixture, options: EngineOptions.parse(options))
}

/// Token t of stream s: deterministic, different per stream.
private func token(_ s: Int, _ t: Int, _ vocab: Int) -> Int32 { Int32((s * 31 + t * 7 + t * t) % vocab) }

/// Steps `e` through `steps` tokens of stream `s`; returns the last logits row.
private func decode(_ e: Engine, stream s: Int, steps: Int) throws -> [Float] {
    let vocab = e.config.vocabSize
    try [Int32(1), Int32(2), Int32(3)].withUnsafeBufferPointer { try e.prefill($0, seq: 0) }
    for t in 0..<steps { try [token(s, t, vocab)].withUnsafeBufferPointer { try e.step($0) } }
    return Array(UnsafeBufferPointer(start: e.backend.logits, count: vocab))
}

/// Runs `bodies` on threads of their own, all at once, and joins them (pthread_join: a happens-before
/// edge ThreadSanitizer sees); rethrows the first error.
private func onThreads(_ bodies: [() throws -> Void]) throws {
    final class Box {
        let body: () throws -> Void
        var error: Error?
        init(_ body: @escaping () throws -> Void) { self.body = body }
    }
    let boxes = bodies.map(Box.init)
    var threads: [pthread_t] = []
    for box in boxes {
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            do { try box.body() } catch { box.error = error }
            return nil
        }, Unmanaged.passRetained(box).toOpaque())
        XCTAssertEqual(rc, 0)
        threads.append(t)
    }
    for t in threads { pthread_join(t, nil) }
    if let error = boxes.compactMap(\.error).first { throw error }
}

final class EngineConcurrencyTests: XCTestCase {
    func testEnginesOnFourThreadsEqualTheirRunsAlone() throws {
        let steps = 48
        let options = [
            #"{"backend": "cpu", "threads": 2}"#, #"{"backend": "cpu", "threads": 3}"#,
            #"{"backend": "metal"}"#, #"{"backend": "metal", "recorded": true}"#,
        ]
        var alone: [[Float]] = []
        for (s, o) in options.enumerated() { alone.append(try decode(engine(o), stream: s, steps: steps)) }

        var together = [[Float]](repeating: [], count: options.count)
        let lock = NSLock()
        try onThreads(options.enumerated().map { s, o in
            {
                let e = try engine(o)
                let row = try decode(e, stream: s, steps: steps)
                lock.lock()
                together[s] = row
                lock.unlock()
            }
        })
        for s in options.indices { XCTAssertEqual(together[s], alone[s], options[s]) }
    }

    /// One thread saves its sequence's state every few steps and hands it over; another thread loads it
    /// into its own engine and continues from there, while a third engine steps on its own.
    func testStateHandedBetweenThreadsContinuesTheSameSequence() throws {
        let steps = 40, every = 8, vocab = try engine("{}").config.vocabSize
        // The same hand-overs on one thread: the sequence's state copied into a second engine.
        let reference = try engine(#"{"backend": "cpu", "threads": 2}"#), branch = try engine("{}")
        var expected: [[Float]] = []
        try [Int32(1), Int32(2), Int32(3)].withUnsafeBufferPointer { try reference.prefill($0, seq: 0) }
        for t in 0..<steps {
            try [token(0, t, vocab)].withUnsafeBufferPointer { try reference.step($0) }
            if (t + 1) % every == 0 {
                var bytes = [UInt8](repeating: 0, count: reference.stateSize)
                try bytes.withUnsafeMutableBytes { try reference.saveState(seq: 0, into: $0) }
                try bytes.withUnsafeBytes { try branch.loadState(seq: 0, from: $0) }
                try [token(9, t, vocab)].withUnsafeBufferPointer { try branch.step($0) }
                expected.append(Array(UnsafeBufferPointer(start: branch.backend.logits, count: vocab)))
            }
        }

        let lock = NSCondition()
        var handed: [[UInt8]] = []
        var received: [[Float]] = []
        try onThreads([
            { // producer: the sequence itself
                let e = try engine(#"{"backend": "cpu", "threads": 2}"#)
                try [Int32(1), Int32(2), Int32(3)].withUnsafeBufferPointer { try e.prefill($0, seq: 0) }
                for t in 0..<steps {
                    try [token(0, t, vocab)].withUnsafeBufferPointer { try e.step($0) }
                    if (t + 1) % every == 0 {
                        var bytes = [UInt8](repeating: 0, count: e.stateSize)
                        try bytes.withUnsafeMutableBytes { try e.saveState(seq: 0, into: $0) }
                        lock.lock()
                        handed.append(bytes)
                        lock.signal()
                        lock.unlock()
                    }
                }
            },
            { // consumer: loads each state into a Metal engine and takes one step of its own
                let e = try engine(#"{"backend": "metal"}"#)
                for _ in 0..<(steps / every) {
                    lock.lock()
                    while handed.isEmpty { lock.wait() }
                    let bytes = handed.removeFirst()
                    lock.unlock()
                    try bytes.withUnsafeBytes { try e.loadState(seq: 0, from: $0) }
                    try [token(9, (received.count + 1) * every - 1, vocab)].withUnsafeBufferPointer { try e.step($0) }
                    received.append(Array(UnsafeBufferPointer(start: e.backend.logits, count: vocab)))
                }
            },
            { // bystander
                _ = try decode(engine(#"{"backend": "cpu", "threads": 2}"#), stream: 5, steps: steps)
            },
        ])
        XCTAssertEqual(received.count, expected.count)
        for (r, x) in zip(received, expected) {
            // CPU (producer) and Metal (consumer) sum in different orders: equal within rounding.
            let d = zip(r, x).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(d, 1e-4 * (x.map(abs).max() ?? 1))
        }
    }
}
