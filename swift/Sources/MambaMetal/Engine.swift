// An engine: one model, a batch of independent sequences, one backend. Every input is validated
// here, before a backend sees it, so a failed call leaves state and logits exactly as they were.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let mambaVersion = "0.1.0"
let mambaABIVersion: UInt32 = 1

struct EngineOptions {
    enum BackendChoice: String { case auto, cpu, metal }

    var backend: BackendChoice = .auto
    var batchSize = 1
    var dtype: DType? = nil // nil: as stored
    var threads = 0
    var recorded = false
    /// Metal: the contents of configs/metal_tune.json, searched for this GPU and model shape.
    var tuneTable: JSON? = nil
    /// Where `tuneTable` came from (a path or URL), so its errors name the file.
    var tuneTableSource = "metal_tune.json"
    /// Metal: explicit kernel parameters (the tuner's candidates); override the table.
    var tuning: JSON? = nil
    /// Metal: how a prompt runs. `.chunked` (the default) uses the chunked (SSD) prefill kernels;
    /// `.tokens` feeds it token by token through the decode kernels, which tests compare against.
    var prefillMode: PrefillMode = .chunked

    enum PrefillMode: String { case chunked, tokens }

    static func parse(_ text: String?) throws -> EngineOptions {
        var o = EngineOptions()
        guard let text, !text.isEmpty else { return o }
        let json: JSON
        do { json = try JSON.parse(text, context: "options") } catch let f as MambaFailure {
            throw MambaFailure.argument(f.message)
        }
        guard let obj = json.object else { throw MambaFailure.argument("options must be a JSON object") }
        for (key, v) in obj {
            switch key {
            case "backend":
                guard let s = v.string, let b = BackendChoice(rawValue: s) else {
                    throw MambaFailure.argument("options.backend must be \"auto\", \"cpu\" or \"metal\"")
                }
                o.backend = b
            case "batchSize":
                guard let n = v.int, (1...256).contains(n) else {
                    throw MambaFailure.argument("options.batchSize must be an integer from 1 to 256")
                }
                o.batchSize = n
            case "dtype":
                switch v.string {
                case "auto": o.dtype = nil
                case "f32": o.dtype = .f32
                case "f16": o.dtype = .f16
                case "bf16": o.dtype = .bf16
                default: throw MambaFailure.argument("options.dtype must be \"auto\", \"f32\", \"f16\" or \"bf16\"")
                }
            case "threads":
                guard let n = v.int, (0...1024).contains(n) else {
                    throw MambaFailure.argument("options.threads must be an integer from 0 to 1024")
                }
                o.threads = n
            case "recorded":
                guard let b = v.bool else { throw MambaFailure.argument("options.recorded must be true or false") }
                o.recorded = b
            case "tuneTable":
                o.tuneTable = v // checked by MetalTuning.resolve, whose errors name tuneTableSource
            case "tuneTableSource":
                guard let name = v.string else { throw MambaFailure.argument("options.tuneTableSource must be a string") }
                o.tuneTableSource = name
            case "prefillMode":
                guard let s = v.string, let m = PrefillMode(rawValue: s) else {
                    throw MambaFailure.argument("options.prefillMode must be \"chunked\" or \"tokens\"")
                }
                o.prefillMode = m
            case "tuning":
                guard v.object != nil else { throw MambaFailure.argument("options.tuning must be a JSON object") }
                o.tuning = v
            default:
                throw MambaFailure.argument("unknown option \"\(key)\"")
            }
        }
        return o
    }
}

final class Engine {
    let config: MambaConfig
    let weights: ModelWeights
    let backend: Backend
    let batch: Int
    let layout: StateLayout
    /// NUL-terminated JSON for mamba_engine_info.
    let info: UnsafeMutablePointer<CChar>

    /// Saved state: magic, format version, weights fingerprint, float count, then the floats.
    static let stateMagic: UInt32 = 0x5342_4D4D // "MMBS"
    static let stateHeaderBytes = 24

    convenience init(directory: String, options: EngineOptions) throws {
        try self.init(checkpoint: Checkpoint.load(directory: directory), options: options)
    }

    init(checkpoint ck: Checkpoint, options: EngineOptions) throws {
        try ResourceBudget.check(ck.config, weightBytes: ck.tensors.values.reduce(0) { $0 + $1.byteCount },
                                 directory: ck.directory)
        weights = try ModelWeights(ck, dtype: options.dtype)
        config = ck.config
        batch = options.batchSize
        layout = StateLayout(config: config)
        switch options.backend {
        case .cpu:
            backend = try CPUBackend(weights: weights, batch: batch, threads: options.threads)
        case .metal:
            backend = try MetalSupport.makeBackend(weights: weights, options: options)
        case .auto:
            // MetalCompat (Linux) is a correctness tool, far slower than the CPU backend: auto skips it.
            if MetalSupport.isNativeGPU, let b = try? MetalSupport.makeBackend(weights: weights, options: options) {
                backend = b
            } else {
                backend = try CPUBackend(weights: weights, batch: batch, threads: options.threads)
            }
        }
        var fields: [String: JSON] = [
            "abiVersion": .number(Double(mambaABIVersion)), "version": .string(mambaVersion),
            "backend": .string(backend.name), "device": .string(backend.device),
            "dtype": .string(weights.matrixDType), "batchSize": .number(Double(batch)),
            "vocabSize": .number(Double(config.vocabSize)),
            "stateBytes": .number(Double(Engine.stateHeaderBytes + layout.bytesPerSequence)),
            "threads": .number(Double(backend.threads)),
            "weightBytesPerToken": .number(Double(weights.decodeWeightBytes)),
            "stateBytesPerToken": .number(Double(2 * batch * layout.bytesPerSequence)),
            "config": config.json,
        ]
        fields.merge(backend.extraInfo) { a, _ in a }
        info = strdup(JSON.object(fields).text)!
    }

    deinit { free(info) }

    private func checkTokens(_ tokens: UnsafeBufferPointer<Int32>) throws {
        for (i, t) in tokens.enumerated() where t < 0 || Int(t) >= config.vocabSize {
            throw MambaFailure.token("token id \(t) at position \(i) is out of range [0, \(config.vocabSize))")
        }
    }

    private func checkSeq(_ seq: Int) throws {
        guard seq >= 0 && seq < batch else {
            throw MambaFailure.argument("sequence index \(seq) is out of range [0, \(batch))")
        }
    }

    func step(_ tokens: UnsafeBufferPointer<Int32>) throws {
        guard tokens.count == batch else {
            throw MambaFailure.argument("step takes one token per sequence: got \(tokens.count), batch size is \(batch)")
        }
        try checkTokens(tokens)
        try backend.step(tokens)
    }

    func prefill(_ tokens: UnsafeBufferPointer<Int32>, seq: Int) throws {
        try checkSeq(seq)
        guard tokens.count > 0 else { throw MambaFailure.argument("prefill needs at least one token") }
        try checkTokens(tokens)
        try backend.prefill(tokens, seq: seq)
    }

    func reset(seq: Int) throws {
        if seq == -1 {
            for s in 0..<batch { backend.reset(seq: s) }
            return
        }
        try checkSeq(seq)
        backend.reset(seq: seq)
    }

    var stateSize: Int { Engine.stateHeaderBytes + layout.bytesPerSequence }

    func saveState(seq: Int, into out: UnsafeMutableRawBufferPointer) throws {
        try checkSeq(seq)
        guard out.count == stateSize else {
            throw MambaFailure.argument("state buffer has \(out.count) bytes; this model's state needs \(stateSize)")
        }
        let base = out.baseAddress!
        base.storeBytes(of: Engine.stateMagic.littleEndian, toByteOffset: 0, as: UInt32.self)
        base.storeBytes(of: UInt32(1).littleEndian, toByteOffset: 4, as: UInt32.self)
        base.storeBytes(of: weights.fingerprint.littleEndian, toByteOffset: 8, as: UInt64.self)
        base.storeBytes(of: UInt64(layout.floatsPerSequence).littleEndian, toByteOffset: 16, as: UInt64.self)
        backend.readState(seq: seq, into: UnsafeMutableRawBufferPointer(rebasing: out[Engine.stateHeaderBytes...]))
    }

    func loadState(seq: Int, from data: UnsafeRawBufferPointer) throws {
        try checkSeq(seq)
        guard data.count >= Engine.stateHeaderBytes else {
            throw MambaFailure.state("state bytes are too short (\(data.count) bytes) to be a saved Mamba state")
        }
        let magic = UInt32(littleEndian: data.loadUnaligned(fromByteOffset: 0, as: UInt32.self))
        let version = UInt32(littleEndian: data.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
        let fp = UInt64(littleEndian: data.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let floats = UInt64(littleEndian: data.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        guard magic == Engine.stateMagic, version == 1 else {
            throw MambaFailure.state("state bytes are not a saved Mamba state (bad magic or version)")
        }
        guard floats == UInt64(layout.floatsPerSequence), data.count == stateSize else {
            throw MambaFailure.state(
                "state bytes hold \(floats) floats in \(data.count) bytes; this model's state is \(layout.floatsPerSequence) floats in \(stateSize) bytes")
        }
        guard fp == weights.fingerprint else {
            throw MambaFailure.state("state bytes were saved by another model (weights fingerprint differs)")
        }
        backend.writeState(seq: seq, from: UnsafeRawBufferPointer(rebasing: data[Engine.stateHeaderBytes...]))
    }
}
