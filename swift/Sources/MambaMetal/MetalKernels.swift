// Compute pipelines, built once at load: one library per .metal file, variants by function constants.
// Kernels are named by the generated bindings (Generated/KernelBindings.swift): a pipeline knows its
// kernel's type, so its constants and arguments can only be given by the names the kernel declares.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

/// A function-constant value, typed as the kernel declares it.
enum FunctionConstant: Hashable {
    case int(Int)
    case uint(Int)
    case bool(Bool)
    case float(Float)
}

/// The function constants of one .metal file (generated: `Kernel.<File>Constants`).
protocol FunctionConstants {
    /// The [[function_constant(id)]] id and value of every constant that is set.
    var values: [(id: Int, value: FunctionConstant)] { get }
}

/// A buffer and the byte offset a kernel parameter starts at.
typealias KernelBuffer = (buffer: any MTLBuffer, offset: Int)

/// Every buffer and threadgroup-memory argument of one dispatch (generated: `Kernel.<Name>.Arguments`).
protocol KernelArguments {
    func bind(to sink: any MetalCommandSink)
}

/// One kernel of metal/: its file, function name, constants and arguments (generated: `Kernel.<Name>`).
protocol KernelBinding {
    associatedtype Constants: FunctionConstants
    associatedtype Arguments: KernelArguments
    static var file: String { get }
    static var function: String { get }
}

/// A pipeline of kernel `K`.
struct KernelPipeline<K: KernelBinding> {
    let state: any MTLComputePipelineState
}

/// How many threads a dispatch runs.
enum DispatchGrid {
    /// Whole threadgroups.
    case threadgroups(MTLSize, threadsPerThreadgroup: MTLSize)
    /// Exactly this many threads; the threadgroups at the edges are partial.
    case threads(MTLSize, threadsPerThreadgroup: MTLSize)
}

extension MetalCommandSink {
    /// Sets `pipeline` and its `arguments`, then dispatches `grid`.
    func dispatch<K>(_ pipeline: KernelPipeline<K>, _ arguments: K.Arguments, _ grid: DispatchGrid) {
        setPipeline(pipeline.state)
        arguments.bind(to: self)
        switch grid {
        case .threadgroups(let groups, let threads): dispatchThreadgroups(groups, threadsPerThreadgroup: threads)
        case .threads(let grid, let threads): dispatchThreads(grid, threadsPerThreadgroup: threads)
        }
    }
}

final class MetalKernels {
    let device: any MTLDevice
    private var libraries: [String: any MTLLibrary] = [:]
    /// Pipelines by kernel and constants: a specialisation asked for twice (per-layer matrices of one
    /// format, the decode plans of two batch sizes) is built once.
    private var pipelines: [PipelineKey: any MTLComputePipelineState] = [:]
    private(set) var pipelinesBuilt = 0

    private struct PipelineKey: Hashable {
        let file: String, function: String
        let ids: [Int], values: [FunctionConstant]
    }

    init(device: any MTLDevice) throws {
        self.device = device
        for file in MetalSources.files {
            do {
                libraries[file.name] = try device.makeLibrary(source: file.source,
                                                              options: MetalKernels.compileOptions(file.name))
            } catch {
                throw MambaFailure.backend("cannot compile metal/\(file.name): \(error)")
            }
        }
    }

    /// Files compiled without fast math, and why: ssd_prefill.metal keeps the cumulative sum of dt·A as a
    /// compensated hi + lo pair (TwoSum, docs/gpu-proxy.md's precision section), which fast math may
    /// reassociate away (lo = (a − (s − b)) + … folds to 0), bringing back the 1e-3 errors of a long chunk
    /// with extreme decay. Every other file keeps Metal's default fast math.
    static let safeMathFiles: Set<String> = ["ssd_prefill.metal"]

    /// Compile options of one .metal file's library: nil (Metal's defaults) unless it needs safe math.
    static func compileOptions(_ file: String) -> MTLCompileOptions? {
        guard safeMathFiles.contains(file) else { return nil }
        let options = MTLCompileOptions()
        if #available(macOS 15.0, iOS 18.0, *) {
            options.mathMode = .safe
        } else {
            options.fastMathEnabled = false
        }
        return options
    }

    /// Kernel `K` specialised with `constants`.
    func pipeline<K: KernelBinding>(_ kernel: K.Type, _ constants: K.Constants) throws -> KernelPipeline<K> {
        let key = PipelineKey(file: K.file, function: K.function, ids: constants.values.map(\.id),
                              values: constants.values.map(\.value))
        if let state = pipelines[key] { return KernelPipeline(state: state) }
        guard let library = libraries[K.file] else { throw MambaFailure.internalError("no Metal library \(K.file)") }
        let values = MTLFunctionConstantValues()
        for (index, c) in constants.values {
            switch c {
            case .int(let v):
                var x = Int32(v)
                values.setConstantValue(&x, type: .int, index: index)
            case .uint(let v):
                var x = UInt32(v)
                values.setConstantValue(&x, type: .uint, index: index)
            case .bool(let v):
                var x = v
                values.setConstantValue(&x, type: .bool, index: index)
            case .float(let v):
                var x = v
                values.setConstantValue(&x, type: .float, index: index)
            }
        }
        do {
            let fn = try library.makeFunction(name: K.function, constantValues: values)
            // Built with indirect-command-buffer support so recorded replay can reuse every pipeline.
            let desc = MTLComputePipelineDescriptor()
            desc.computeFunction = fn
            desc.supportIndirectCommandBuffers = true
            let state = try device.makeComputePipelineState(descriptor: desc, options: [], reflection: nil)
            pipelinesBuilt += 1
            pipelines[key] = state
            return KernelPipeline(state: state)
        } catch {
            throw MambaFailure.backend("cannot build Metal pipeline \(K.function) (\(K.file)): \(error)")
        }
    }
}
