// Model directories whose files are not files: a FIFO would block open() forever, a device or a
// directory has no bytes to map. Each is an IO error naming the path, at once.
import Foundation
import XCTest
@testable import MambaMetal

final class HostileFileTests: XCTestCase {
    private var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "mamba-hostile-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    private func expectIOError(_ what: String, _ contains: String) {
        let started = Date()
        XCTAssertThrowsError(try Checkpoint.load(directory: dir), what) { error in
            guard let f = error as? MambaFailure else { return XCTFail("\(what): \(error)") }
            XCTAssertEqual(f.kind, .io, "\(what): \(f.message)")
            XCTAssertTrue(f.message.contains(contains), "\(what): \(f.message)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "\(what) took too long")
    }

    func testAFifoIsRefusedWithoutBlocking() throws {
        XCTAssertEqual(mkfifo(dir + "/config.json", 0o600), 0)
        expectIOError("FIFO config.json", "config.json is not a regular file")
    }

    func testADirectoryOrADeviceIsRefused() throws {
        try FileManager.default.createDirectory(atPath: dir + "/config.json", withIntermediateDirectories: false)
        expectIOError("directory config.json", "config.json is not a regular file")
        try FileManager.default.removeItem(atPath: dir + "/config.json")
        try FileManager.default.createSymbolicLink(atPath: dir + "/config.json", withDestinationPath: "/dev/zero")
        expectIOError("config.json → /dev/zero", "config.json is not a regular file")
    }
}
