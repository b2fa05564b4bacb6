// The libFuzzer driver for the targets in Sources/MambaMetal/FuzzTargets.swift. Built only by
// tools/fuzz.ts (MAMBA_FUZZ=1 in the environment adds this target to Package.swift), with
// -sanitize=fuzzer,address; libFuzzer provides main().
//
//   MAMBA_FUZZ_TARGET=<name>       the target to run (MAMBA_FUZZ_TARGET=list: print "name max_len" lines)
//   MAMBA_FUZZ_STATE_MODEL=<dir>   the model the `state` target loads states into
//   MAMBA_FUZZ_VERBOSE=1           print why each input was refused (to replay single files)
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@testable import MambaMetal

nonisolated(unsafe) private var target: FuzzTarget?
nonisolated(unsafe) private var verbose = false

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    let name = getenv("MAMBA_FUZZ_TARGET").map { String(cString: $0) } ?? ""
    if name == "list" {
        for t in FuzzTargets.all { print(t.name, t.maxLength) }
        exit(0)
    }
    guard let t = FuzzTargets.named(name) else {
        let names = FuzzTargets.all.map(\.name).joined(separator: ", ")
        fputs("MAMBA_FUZZ_TARGET must name a target: \(names) (got '\(name)')\n", stderr)
        exit(2)
    }
    if let dir = getenv("MAMBA_FUZZ_STATE_MODEL") { FuzzTargets.stateModelDirectory = String(cString: dir) }
    target = t
    verbose = getenv("MAMBA_FUZZ_VERBOSE").map { String(cString: $0) == "1" } ?? false
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let refusal = FuzzTargets.run(target!, UnsafeRawBufferPointer(start: data, count: size))
    if verbose { print(refusal.map { "refused (\($0.kind)): \($0.message)" } ?? "accepted") }
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
private func runDriver(_ argc: UnsafeMutablePointer<Int32>,
                       _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                       _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

/// SwiftPM links an executable's main() to `<module>_main`, which would hide libFuzzer's main(); this one
/// hands over to libFuzzer's driver.
@_cdecl("MambaFuzz_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> Int32 {
    var argc = argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = argv
    return runDriver(&argc, &argv) { fuzzerTestOneInput($0, $1) }
}
