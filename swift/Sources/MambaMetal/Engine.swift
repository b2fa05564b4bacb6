// An engine: one model, a batch of independent sequences, one backend. Every input is validated
// here, before a backend sees it, so a failed call leaves state and logits exactly as they were.

import CMambaCPU
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

let mambaVersion = "0.2.0"

struct EngineOptions {
    enum BackendChoice: String { case auto, cpu, metal }

    var backend: BackendChoice = .auto
    var batchSize = 1
    /// The large matrices' form: as stored, another float dtype, or quantized at load (MLX's algorithm).
    var target = MatrixTarget()
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
        for (name, v) in obj {
            // Every key mamba.h documents is a case (Generated/ABI.swift), so this switch handles them all.
            guard let key = OptionKey(rawValue: name) else { throw MambaFailure.argument("unknown option \"\(name)\"") }
            switch key {
            case .backend:
                guard let s = v.string, let b = BackendChoice(rawValue: s) else {
                    throw MambaFailure.argument("options.backend must be \"auto\", \"cpu\" or \"metal\"")
                }
                o.backend = b
            case .batchSize:
                guard let n = v.int, (1...256).contains(n) else {
                    throw MambaFailure.argument("options.batchSize must be an integer from 1 to 256")
                }
                o.batchSize = n
            case .dtype:
                guard let s = v.string, s == "auto" || WeightDType(rawValue: s) != nil else {
                    throw MambaFailure.argument(
                        "options.dtype must be \"auto\", \"f32\", \"f16\", \"bf16\", \"q8\" or \"q4\"")
                }
                o.target.dtype = WeightDType(rawValue: s)
            case .groupSize:
                guard let n = v.int, [32, 64, 128].contains(n) else {
                    throw MambaFailure.argument("options.groupSize must be 32, 64 or 128")
                }
                o.target.groupSize = n
            case .threads:
                guard let n = v.int, (0...1024).contains(n) else {
                    throw MambaFailure.argument("options.threads must be an integer from 0 to 1024")
                }
                o.threads = n
            case .recorded:
                guard let b = v.bool else { throw MambaFailure.argument("options.recorded must be true or false") }
                o.recorded = b
            case .tuneTable:
                o.tuneTable = v // checked by MetalTuning.resolve, whose errors name tuneTableSource
            case .tuneTableSource:
                guard let name = v.string else { throw MambaFailure.argument("options.tuneTableSource must be a string") }
                o.tuneTableSource = name
            case .prefillMode:
                guard let s = v.string, let m = PrefillMode(rawValue: s) else {
                    throw MambaFailure.argument("options.prefillMode must be \"chunked\" or \"tokens\"")
                }
                o.prefillMode = m
            case .tuning:
                guard v.object != nil else { throw MambaFailure.argument("options.tuning must be a JSON object") }
                o.tuning = v
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
    /// Per-sequence samplers (mamba_sampler_set / mamba_sample).
    let samplers: SamplerBank

    /// Saved state: magic, format version, weights fingerprint, float count, then the floats.
    static let stateMagic: UInt32 = 0x5342_4D4D // "MMBS"
    static let stateHeaderBytes = 24

    /// Backends whose kernels read quantized (q8/q4) matrices. The one place this is decided: the CPU
    /// backend's CMambaCPU kernels and Metal's (MV_QUANT, MM_QUANT, EMB_QUANT in metal/) read them.
    static let backendsRunningQuantized: Set<EngineOptions.BackendChoice> = [.cpu, .metal]

    /// Refuses quantized weights on a backend that cannot run them, naming a quantized tensor.
    static func checkQuantizedSupport(_ weights: ModelWeights, _ backend: EngineOptions.BackendChoice,
                                      path: String) throws {
        guard let q = weights.firstQuantized, !backendsRunningQuantized.contains(backend) else { return }
        throw MambaFailure.unsupported(
            "\(path): tensor \(q.name) is quantized (\(q.dtype.rawValue), \(q.source)) and the \(backend.rawValue) backend cannot run quantized matrices yet; load with dtype \"f16\" or \"f32\" to dequantize at load")
    }

    /// The weights at `path`: a model directory, or a GGUF file.
    static func loadWeights(path: String, target: MatrixTarget) throws -> ModelWeights {
        if fileExists(path) && !isDirectory(path) { return try GGUFModel.load(path: path, target: target) }
        return try ModelWeights(Checkpoint.load(directory: path), target: target)
    }

    convenience init(directory: String, options: EngineOptions) throws {
        // A GGUF file's sizes are its metadata; a directory's are its config.json.
        let gguf = fileExists(directory) && !isDirectory(directory)
        try self.init(weights: Engine.loadWeights(path: directory, target: options.target), path: directory,
                      sizesFrom: gguf ? directory : directory + "/config.json", options: options)
    }

    /// An engine over a checkpoint read from memory (the fuzz targets' model directories).
    convenience init(checkpoint ck: Checkpoint, options: EngineOptions) throws {
        try self.init(weights: ModelWeights(ck, target: options.target), path: ck.directory,
                      sizesFrom: ck.directory + "/config.json", options: options)
    }

    /// `path` names the model in messages, `sizesFrom` the file its sizes came from.
    init(weights: ModelWeights, path directory: String, sizesFrom: String, options: EngineOptions) throws {
        try ResourceBudget.check(weights.config, weightBytes: weights.matrices.reduce(0) { $0 + $1.byteCount },
                                 source: sizesFrom)
        self.weights = weights
        config = weights.config
        batch = options.batchSize
        layout = StateLayout(config: config)
        switch options.backend {
        case .cpu:
            try Engine.checkQuantizedSupport(weights, .cpu, path: directory)
            backend = try CPUBackend(weights: weights, batch: batch, threads: options.threads)
        case .metal:
            try Engine.checkQuantizedSupport(weights, .metal, path: directory)
            backend = try MetalSupport.makeBackend(weights: weights, options: options)
        case .auto:
            // MetalCompat (Linux) is a correctness tool, far slower than the CPU backend: auto skips it.
            let metalRuns = (try? Engine.checkQuantizedSupport(weights, .metal, path: directory)) != nil
            if MetalSupport.isNativeGPU, metalRuns,
               let b = try? MetalSupport.makeBackend(weights: weights, options: options) {
                backend = b
            } else {
                try Engine.checkQuantizedSupport(weights, .cpu, path: directory)
                backend = try CPUBackend(weights: weights, batch: batch, threads: options.threads)
            }
        }
        var fields: [InfoKey: JSON] = [
            .abiVersion: .number(Double(mambaABIVersion)), .version: .string(mambaVersion),
            .backend: .string(backend.name), .device: .string(backend.device),
            .dtype: .string(weights.matrixDType), .batchSize: .number(Double(batch)),
            .vocabSize: .number(Double(config.vocabSize)),
            .stateBytes: .number(Double(Engine.stateHeaderBytes + layout.bytesPerSequence)),
            .threads: .number(Double(backend.threads)),
            .weightBytesPerToken: .number(Double(weights.decodeWeightBytes)),
            .stateBytesPerToken: .number(Double(2 * batch * layout.bytesPerSequence)),
            .config: config.json,
            .matrices: .array(weights.matrices.map(\.info)),
        ]
        fields.merge(backend.extraInfo) { a, _ in a }
        samplers = try SamplerBank(batch: batch, rowLength: config.vocabSize, pool: backend.samplingPool,
                                   threads: backend.threads)
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

    /// tokens[i] for sequence seqs[i] only; a full step when every sequence is listed in order.
    func step(_ tokens: UnsafeBufferPointer<Int32>, seqs: UnsafeBufferPointer<Int32>) throws {
        guard tokens.count == seqs.count else {
            throw MambaFailure.argument("step_seqs: \(tokens.count) tokens for \(seqs.count) sequences")
        }
        guard seqs.count <= batch else {
            throw MambaFailure.argument("step_seqs: \(seqs.count) sequences, batch size is \(batch)")
        }
        var inOrder = seqs.count == batch
        for (i, s) in seqs.enumerated() {
            guard s >= 0 && Int(s) < batch else {
                throw MambaFailure.argument("sequence index \(s) at position \(i) is out of range [0, \(batch))")
            }
            for j in 0..<i where seqs[j] == s { throw MambaFailure.argument("sequence \(s) is listed twice") }
            inOrder = inOrder && Int(s) == i
        }
        try checkTokens(tokens)
        if seqs.isEmpty { return }
        if inOrder { try backend.step(tokens) } else { try backend.step(tokens, seqs: seqs) }
    }

    func prefill(_ tokens: UnsafeBufferPointer<Int32>, seq: Int) throws {
        try checkSeq(seq)
        guard tokens.count > 0 else { throw MambaFailure.argument("prefill needs at least one token") }
        try checkTokens(tokens)
        try backend.prefill(tokens, seq: seq)
    }

    func setSampler(seq: Int, params: mamba_sampling, history: UnsafeBufferPointer<Int32>) throws {
        try checkSeq(seq)
        try samplers.set(seq: seq, params: params, history: history)
    }

    func sample(seqs: UnsafeBufferPointer<Int32>, out: UnsafeMutablePointer<Int32>) throws {
        try samplers.check(seqs: seqs, batch: batch)
        samplers.sample(logits: backend.logits, seqs: seqs, out: out)
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
