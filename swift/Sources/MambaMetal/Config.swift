// Model hyper-parameters, read from config.json in either the transformers or the mamba_ssm format.

/// The shape of a Mamba2 language model. Derived sizes follow mamba_ssm's Mamba2 module.
struct MambaConfig: Equatable {
    var dModel: Int
    var nLayer: Int
    /// Rows of the embedding matrix (mamba_ssm pads vocab_size to pad_vocab_size_multiple).
    var vocabSize: Int
    var dState: Int
    var dConv: Int
    var expand: Int
    var headDim: Int
    var nGroups: Int
    var chunkSize: Int
    var eps: Double
    var tieEmbeddings: Bool
    var timeStepMin: Double
    var timeStepMax: Double

    var dInner: Int { expand * dModel }
    var nHeads: Int { dInner / headDim }
    var convDim: Int { dInner + 2 * nGroups * dState }
    /// in_proj output: z (dInner) | x B C (convDim) | dt (nHeads)
    var dInProj: Int { 2 * dInner + 2 * nGroups * dState + nHeads }

    /// Checks the sizes are positive and divide as the architecture needs.
    func validate(_ file: String) throws {
        let fields: [(String, Int)] = [
            ("d_model", dModel), ("n_layer", nLayer), ("vocab_size", vocabSize), ("d_state", dState),
            ("d_conv", dConv), ("expand", expand), ("headdim", headDim), ("ngroups", nGroups),
            ("chunk_size", chunkSize),
        ]
        for (name, v) in fields where v <= 0 || v > 1 << 24 {
            throw MambaFailure.format("\(file): \(name) = \(v) is out of range")
        }
        // The backends index with 32-bit integers; each field is below 2^24, their products need not be.
        for (name, v) in [("d_inner", dInner), ("conv_dim", convDim), ("in_proj rows", dInProj)] where v > Int(Int32.max) {
            throw MambaFailure.format("\(file): \(name) = \(v) is out of range")
        }
        if dInner % headDim != 0 {
            throw MambaFailure.format("\(file): d_inner \(dInner) is not a multiple of headdim \(headDim)")
        }
        if nHeads % nGroups != 0 {
            throw MambaFailure.format("\(file): \(nHeads) heads do not split into \(nGroups) groups")
        }
        if !(eps > 0) { throw MambaFailure.format("\(file): layer_norm_epsilon must be > 0") }
        if !(timeStepMin <= timeStepMax) || timeStepMin < 0 {
            throw MambaFailure.format("\(file): time_step_limit (\(timeStepMin), \(timeStepMax)) is not a range")
        }
    }

    /// JSON object for the C ABI's engine info (camelCase, as the TypeScript API names them).
    var json: JSON {
        let fields: [ConfigKey: JSON] = [
            .dModel: .number(Double(dModel)), .nLayer: .number(Double(nLayer)),
            .vocabSize: .number(Double(vocabSize)), .dState: .number(Double(dState)),
            .dConv: .number(Double(dConv)), .expand: .number(Double(expand)),
            .headDim: .number(Double(headDim)), .nHeads: .number(Double(nHeads)),
            .nGroups: .number(Double(nGroups)), .dInner: .number(Double(dInner)),
            .chunkSize: .number(Double(chunkSize)), .eps: .number(eps),
            .tieEmbeddings: .bool(tieEmbeddings), .timeStepMin: .number(timeStepMin),
            .timeStepMax: timeStepMax.isFinite ? .number(timeStepMax) : .string("Infinity"),
        ]
        return .object(fields)
    }
}

extension MambaConfig {
    /// Parses config.json. The transformers format has "hidden_size"; the mamba_ssm format "d_model".
    static func parse(_ json: JSON, file: String) throws -> MambaConfig {
        guard json.object != nil else { throw MambaFailure.format("\(file): expected a JSON object") }
        let c = json["hidden_size"] != nil ? try transformers(json, file) : try mambaSSM(json, file)
        try c.validate(file)
        return c
    }

    /// a × b, or nil when it overflows (the fields are not range-checked yet where this is used).
    private static func product(_ a: Int, _ b: Int) -> Int? {
        let (p, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? nil : p
    }

    private static func int(_ j: JSON, _ key: String, _ file: String, default d: Int? = nil) throws -> Int {
        guard let v = j[key], v != .null else {
            if let d { return d }
            throw MambaFailure.format("\(file): missing \"\(key)\"")
        }
        guard let i = v.int else { throw MambaFailure.format("\(file): \"\(key)\" must be an integer") }
        return i
    }

    private static func bool(_ j: JSON, _ key: String, _ file: String, default d: Bool) throws -> Bool {
        guard let v = j[key], v != .null else { return d }
        guard let b = v.bool else { throw MambaFailure.format("\(file): \"\(key)\" must be true or false") }
        return b
    }

    /// A float that may be written as transformers encodes non-finite values: {"__float__": "Infinity"}.
    private static func float(_ v: JSON, _ what: String, _ file: String) throws -> Double {
        if let d = v.double { return d }
        if let s = v["__float__"]?.string ?? v.string {
            switch s {
            case "Infinity", "inf": return .infinity
            case "-Infinity", "-inf": return -.infinity
            default: break
            }
        }
        throw MambaFailure.format("\(file): \(what) must be a number")
    }

    private static func timeStepLimit(_ v: JSON?, _ file: String) throws -> (Double, Double) {
        guard let v, v != .null else { return (0, .infinity) }
        guard let a = v.array, a.count == 2 else {
            throw MambaFailure.format("\(file): time_step_limit must be a pair [min, max]")
        }
        return (try float(a[0], "time_step_limit[0]", file), try float(a[1], "time_step_limit[1]", file))
    }

    private static func transformers(_ j: JSON, _ file: String) throws -> MambaConfig {
        if let t = j["model_type"]?.string, t != "mamba2" {
            throw MambaFailure.unsupported("\(file): model_type \"\(t)\" is not mamba2")
        }
        if try bool(j, "use_bias", file, default: false) {
            throw MambaFailure.unsupported("\(file): use_bias = true (in_proj/out_proj biases) is not supported")
        }
        if !(try bool(j, "use_conv_bias", file, default: true)) {
            throw MambaFailure.unsupported("\(file): use_conv_bias = false is not supported")
        }
        if let act = j["hidden_act"]?.string, act != "silu" {
            throw MambaFailure.unsupported("\(file): hidden_act \"\(act)\" is not supported (silu only)")
        }
        let dModel = try int(j, "hidden_size", file)
        let expand = try int(j, "expand", file, default: 2)
        let headDim = try int(j, "head_dim", file, default: 64)
        if let n = j["num_heads"]?.int, product(n, headDim) != product(expand, dModel) {
            throw MambaFailure.format(
                "\(file): num_heads \(n) × head_dim \(headDim) != expand \(expand) × hidden_size \(dModel)")
        }
        let (lo, hi) = try timeStepLimit(j["time_step_limit"], file)
        return MambaConfig(
            dModel: dModel, nLayer: try int(j, "num_hidden_layers", file), vocabSize: try int(j, "vocab_size", file),
            dState: try int(j, "state_size", file, default: 128), dConv: try int(j, "conv_kernel", file, default: 4),
            expand: expand, headDim: headDim, nGroups: try int(j, "n_groups", file, default: 8),
            chunkSize: try int(j, "chunk_size", file, default: 256),
            eps: try float(j["layer_norm_epsilon"] ?? .number(1e-5), "layer_norm_epsilon", file),
            tieEmbeddings: try bool(j, "tie_word_embeddings", file, default: false),
            timeStepMin: lo, timeStepMax: hi)
    }

    private static func mambaSSM(_ j: JSON, _ file: String) throws -> MambaConfig {
        guard j["d_model"] != nil else {
            throw MambaFailure.format("\(file): neither \"hidden_size\" (transformers) nor \"d_model\" (mamba_ssm)")
        }
        let ssm = j["ssm_cfg"] ?? .object([:])
        if let layer = ssm["layer"]?.string, layer != "Mamba2" {
            throw MambaFailure.unsupported("\(file): ssm_cfg.layer \"\(layer)\" is not Mamba2")
        }
        if ssm["layer"] == nil {
            throw MambaFailure.unsupported("\(file): ssm_cfg has no \"layer\": \"Mamba2\" (Mamba1 models are not supported)")
        }
        if try int(j, "d_intermediate", file, default: 0) != 0 {
            throw MambaFailure.unsupported("\(file): d_intermediate > 0 (MLP blocks) is not supported")
        }
        if let attn = j["attn_layer_idx"]?.array, !attn.isEmpty {
            throw MambaFailure.unsupported("\(file): attention layers (attn_layer_idx) are not supported")
        }
        if !(try bool(j, "rms_norm", file, default: true)) {
            throw MambaFailure.unsupported("\(file): rms_norm = false (LayerNorm) is not supported")
        }
        for (key, supported) in [("rmsnorm", true), ("norm_before_gate", false), ("bias", false), ("conv_bias", true),
                                 ("D_has_hdim", false)]
        where try bool(ssm, key, file, default: supported) != supported {
            throw MambaFailure.unsupported("\(file): ssm_cfg.\(key) = \(!supported) is not supported")
        }
        let dModel = try int(j, "d_model", file)
        let expand = try int(ssm, "expand", file, default: 2)
        if let dSSM = ssm["d_ssm"], dSSM != .null, dSSM.int != product(expand, dModel) {
            throw MambaFailure.unsupported("\(file): ssm_cfg.d_ssm != expand × d_model is not supported")
        }
        var vocab = try int(j, "vocab_size", file)
        let multiple = try int(j, "pad_vocab_size_multiple", file, default: 1)
        if multiple > 1 && vocab % multiple != 0 { vocab += multiple - vocab % multiple }
        let (lo, hi) = try timeStepLimit(ssm["dt_limit"], file)
        return MambaConfig(
            dModel: dModel, nLayer: try int(j, "n_layer", file), vocabSize: vocab,
            dState: try int(ssm, "d_state", file, default: 128), dConv: try int(ssm, "d_conv", file, default: 4),
            expand: expand, headDim: try int(ssm, "headdim", file, default: 64),
            nGroups: try int(ssm, "ngroups", file, default: 1), chunkSize: try int(ssm, "chunk_size", file, default: 256),
            eps: try float(j["norm_epsilon"] ?? .number(1e-5), "norm_epsilon", file),
            tieEmbeddings: try bool(j, "tie_embeddings", file, default: true),
            timeStepMin: lo, timeStepMax: hi)
    }
}
