// Compute pipelines, built once at load: one library per .metal file, variants by function constants.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

/// A function-constant value, typed as the kernel declares it.
enum FunctionConstant {
    case int(Int)
    case bool(Bool)
    case float(Float)
}

final class MetalKernels {
    let device: any MTLDevice
    private var libraries: [String: any MTLLibrary] = [:]
    private(set) var pipelinesBuilt = 0

    init(device: any MTLDevice) throws {
        self.device = device
        for file in MetalSources.files {
            do {
                libraries[file.name] = try device.makeLibrary(source: file.source, options: nil)
            } catch {
                throw MambaFailure.backend("cannot compile metal/\(file.name): \(error)")
            }
        }
    }

    /// The kernel `function` of `file` (e.g. "matvec.metal") specialised with `constants` (index → value).
    func pipeline(_ file: String, _ function: String, _ constants: [Int: FunctionConstant]) throws
        -> any MTLComputePipelineState
    {
        guard let library = libraries[file] else { throw MambaFailure.internalError("no Metal library \(file)") }
        let values = MTLFunctionConstantValues()
        for (index, c) in constants {
            switch c {
            case .int(let v):
                var x = Int32(v)
                values.setConstantValue(&x, type: .int, index: index)
            case .bool(let v):
                var x = v
                values.setConstantValue(&x, type: .bool, index: index)
            case .float(let v):
                var x = v
                values.setConstantValue(&x, type: .float, index: index)
            }
        }
        do {
            let fn = try library.makeFunction(name: function, constantValues: values)
            // Built with indirect-command-buffer support so recorded replay can reuse every pipeline.
            let desc = MTLComputePipelineDescriptor()
            desc.computeFunction = fn
            desc.supportIndirectCommandBuffers = true
            let state = try device.makeComputePipelineState(descriptor: desc, options: [], reflection: nil)
            pipelinesBuilt += 1
            return state
        } catch {
            throw MambaFailure.backend("cannot build Metal pipeline \(function) (\(file)): \(error)")
        }
    }
}
