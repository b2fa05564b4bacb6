// Libraries and functions. makeLibrary(source:options:) does not compile anything: the kernels were
// compiled into the binary from the same .metal text (tools/gen_metal_bindings.ts), and the library is
// found by hashing the source it is given. A source that matches nothing means the generated files are
// stale, or the source was never registered: both are reported as compile failures.
#if !canImport(Metal)
import CMetalCompat
import Foundation

final class CompatLibrary: MTLLibrary {
    let file: UnsafePointer<mc_file_desc>
    /// The math mode the library was asked for (recorded in traces; the C++ kernels compute as `.safe`).
    let mathMode: MTLMathMode
    var label: String?

    init(file: UnsafePointer<mc_file_desc>, mathMode: MTLMathMode = .fast) {
        self.file = file
        self.mathMode = mathMode
    }

    static func find(source: String, mathMode: MTLMathMode = .fast) throws -> CompatLibrary {
        let text = Array(source.utf8CString) // NUL-terminated, so never empty
        var hash = [CChar](repeating: 0, count: 17)
        mc_source_hash(text, text.count - 1, &hash)
        if let file = mc_find_file(hash) { return CompatLibrary(file: file, mathMode: mathMode) }
        let known = (0..<mc_file_count()).compactMap { mc_file_at($0) }.map { String(cString: $0.pointee.name) }
        let hashText = String(cString: hash)
        throw MTLLibraryError(
            .compileFailure,
            "MetalCompat: this Metal source (hash \(hashText)) is not compiled into MetalCompat, or the compiled "
                + "copy is stale: rerun `deno task gen:metal` and rebuild. Compiled files: "
                + (known.isEmpty ? "none" : known.joined(separator: ", ")))
    }

    var device: any MTLDevice { CompatDevice.shared }
    var fileName: String { String(cString: file.pointee.name) }

    var functionNames: [String] {
        (0..<Int(file.pointee.n_kernels)).map { String(cString: file.pointee.kernels[$0].name) }
    }

    private func kernelIndex(_ name: String) -> Int? {
        (0..<Int(file.pointee.n_kernels)).first { String(cString: file.pointee.kernels[$0].name) == name }
    }

    func makeFunction(name functionName: String) -> (any MTLFunction)? {
        guard let k = kernelIndex(functionName) else { return nil }
        return CompatFunction(library: self, kernel: k, constants: [])
    }

    func makeFunction(name: String, constantValues: MTLFunctionConstantValues) throws -> any MTLFunction {
        guard let k = kernelIndex(name) else {
            throw MTLLibraryError(.functionNotFound, "MetalCompat: no kernel '\(name)' in \(fileName)")
        }
        var values: [[UInt8]?] = []
        for i in 0..<Int(file.pointee.n_constants) {
            let c = file.pointee.constants[i]
            let cname = String(cString: c.name)
            guard let v = constantValues.byIndex[Int(c.index)] ?? constantValues.byName[cname] else {
                values.append(nil)
                continue
            }
            guard v.type.rawValue == UInt(c.data_type) else {
                let declared = MTLDataType(rawValue: UInt(c.data_type)).map { "\($0)" } ?? "type \(c.data_type)"
                throw MTLLibraryError(
                    .compileFailure,
                    "MetalCompat: function constant '\(cname)' (index \(c.index)) of \(fileName) is declared "
                        + "\(declared) but was given a value of type \(v.type)")
            }
            // The C++ global may be larger than the packed value (3-component vectors): zero-pad.
            values.append(v.bytes + [UInt8](repeating: 0, count: max(0, Int(c.size) - v.bytes.count)))
        }
        return CompatFunction(library: self, kernel: k, constants: values)
    }
}

final class CompatFunction: MTLFunction {
    let library: CompatLibrary
    let kernel: Int
    /// One entry per constant of the file (its value bytes, or nil when not defined), kept in memory the
    /// dispatcher can point the runtime at.
    let constantStorage: [UnsafeMutableRawPointer?]
    var label: String?

    init(library: CompatLibrary, kernel: Int, constants: [[UInt8]?]) {
        self.library = library
        self.kernel = kernel
        let n = Int(library.file.pointee.n_constants)
        constantStorage = (0..<n).map { i in
            guard i < constants.count, let bytes = constants[i] else { return nil }
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 16), alignment: 16)
            p.copyMemory(from: bytes, byteCount: bytes.count)
            return p
        }
    }

    deinit { for p in constantStorage { p?.deallocate() } }

    var device: any MTLDevice { CompatDevice.shared }
    var name: String { String(cString: descriptor.name) }
    var functionType: MTLFunctionType { .kernel }
    var descriptor: mc_kernel_desc { library.file.pointee.kernels[kernel] }
}

#endif
