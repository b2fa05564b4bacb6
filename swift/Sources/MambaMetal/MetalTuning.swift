// Kernel parameters of the Metal backend, and their lookup in configs/metal_tune.json (written by
// `deno task tune`): entries keyed by GPU name, model shape and batch; defaults when none matches.
//
// Schema (version 1):
//   {"schema": "mamba-metal-tune/1",
//    "entries": [{"gpu": "Apple M2 Pro", "shape": "d768-l24-s128-h64-g1-v50288", "batch": 1,
//                 "params": {"matvecRowsPerSimdgroup": 2, "matmulTile": 32},
//                 "measured": {...}}]}            ("measured" is free-form, for people)

struct MetalTuning: Equatable {
    // The defaults are what should carry over to Apple GPUs of 10 to 80 cores (docs/gpu-proxy.md, "Kernels
    // that scale with the GPU"): grids of hundreds of threadgroups or more, and short chains of dependent
    // loads in each simdgroup; the H200 proxy's timings ranked the choices that meet that.
    /// Rows of W each simdgroup of the in_proj matvec computes (1…4).
    var matvecRowsPerSimdgroup = 2
    /// Simdgroups sharing each row of the in_proj matvec, each a slice of K (1, 2, 4).
    var matvecSplitK = 2
    /// Rows of W each simdgroup of the lm_head matvec computes (1…4): its own choice, since its N (the
    /// vocabulary) is 15 to 65 times in_proj's, so its grid fills any GPU and longer rows per simdgroup pay.
    var lmHeadRowsPerSimdgroup = 2
    /// Simdgroups sharing each row of the lm_head matvec (1, 2, 4).
    var lmHeadSplitK = 2
    /// Rows of W each simdgroup of the out_proj matvec computes (1…4).
    var outProjRowsPerSimdgroup = 1
    /// Simdgroups sharing each row of the out_proj matvec (1, 2, 4).
    var outProjSplitK = 4
    /// Threadgroups per head of the SSM decode block, each a block of the head's rows (1, 2, 4, 8); by
    /// default the smallest split that fills an 80-core GPU (`fitted`).
    var ssmSplit = 4
    /// Side of the square output tile of the prefill matmul (16 or 32; 8×8 simdgroup blocks).
    var matmulTile = 32

    static let defaults = MetalTuning()

    /// Threadgroups the SSM block's grid should have at least: one for each core of Apple's largest GPU.
    static let ssmThreadgroupsWanted = 80

    /// The defaults for a model shape and batch: the SSM split is the smallest that gives n_heads · split ·
    /// batch ≥ 80 threadgroups (4 for mamba2-130m at batch 1, 1 from batch 4 on), at most 8. More blocks
    /// than that recompute the group's B and C conv once more each, which costs more than it fills.
    static func fitted(config: MambaConfig, batch: Int) -> MetalTuning {
        var t = MetalTuning.defaults
        let splits = allowed(.ssmSplit)
        t.ssmSplit = splits.first { config.nHeads * $0 * max(batch, 1) >= ssmThreadgroupsWanted } ?? splits.last!
        return t
    }
    static let schema = "mamba-metal-tune/1"

    /// The values each parameter may take (mamba.h's @tuning lines say the same).
    static func allowed(_ key: TuningKey) -> [Int] {
        switch key {
        case .matvecRowsPerSimdgroup, .outProjRowsPerSimdgroup, .lmHeadRowsPerSimdgroup: return [1, 2, 3, 4]
        case .matvecSplitK, .outProjSplitK, .lmHeadSplitK: return [1, 2, 4]
        case .ssmSplit: return [1, 2, 4, 8]
        case .matmulTile: return [16, 32]
        }
    }

    subscript(key: TuningKey) -> Int {
        get {
            switch key {
            case .matvecRowsPerSimdgroup: return matvecRowsPerSimdgroup
            case .matvecSplitK: return matvecSplitK
            case .lmHeadRowsPerSimdgroup: return lmHeadRowsPerSimdgroup
            case .lmHeadSplitK: return lmHeadSplitK
            case .outProjRowsPerSimdgroup: return outProjRowsPerSimdgroup
            case .outProjSplitK: return outProjSplitK
            case .ssmSplit: return ssmSplit
            case .matmulTile: return matmulTile
            }
        }
        set {
            switch key {
            case .matvecRowsPerSimdgroup: matvecRowsPerSimdgroup = newValue
            case .matvecSplitK: matvecSplitK = newValue
            case .lmHeadRowsPerSimdgroup: lmHeadRowsPerSimdgroup = newValue
            case .lmHeadSplitK: lmHeadSplitK = newValue
            case .outProjRowsPerSimdgroup: outProjRowsPerSimdgroup = newValue
            case .outProjSplitK: outProjSplitK = newValue
            case .ssmSplit: ssmSplit = newValue
            case .matmulTile: matmulTile = newValue
            }
        }
    }

    /// The parameters as the info JSON reports them (the @tuning keys of mamba.h).
    var json: JSON {
        .object(Dictionary(uniqueKeysWithValues: TuningKey.allCases.map { ($0, JSON.number(Double(self[$0]))) }))
    }

    /// The key a model shape is tuned under.
    static func shapeKey(_ c: MambaConfig) -> String {
        "d\(c.dModel)-l\(c.nLayer)-s\(c.dState)-h\(c.headDim)-g\(c.nGroups)-v\(c.vocabSize)"
    }

    /// Reads a params object; unknown keys and out-of-range values are errors naming the key.
    static func params(_ json: JSON, context: String, base: MetalTuning = .defaults) throws -> MetalTuning {
        guard let obj = json.object else { throw MambaFailure.format("\(context): params must be an object") }
        var t = base
        for (name, v) in obj {
            guard let n = v.int else { throw MambaFailure.format("\(context): \(name) must be an integer") }
            guard let key = TuningKey(rawValue: name) else { throw MambaFailure.format("\(context): unknown parameter \"\(name)\"") }
            let allowed = allowed(key)
            guard allowed.contains(n) else {
                let list = allowed.count == 2 ? "\(allowed[0]) or \(allowed[1])"
                    : allowed == [1, 2, 3, 4] ? "1…4"
                    : allowed.dropLast().map(String.init).joined(separator: ", ") + " or \(allowed.last!)"
                throw MambaFailure.format("\(context): \(name) must be \(list), got \(n)")
            }
            t[key] = n
        }
        return t
    }

    /// The parameters for this GPU, shape and batch: explicit `tuning`, else the table's entry, else defaults.
    /// `source` names the table's file in errors.
    static func resolve(table: JSON?, source: String = "metal_tune.json", tuning: JSON?, gpu: String,
                        config: MambaConfig, batch: Int) throws -> MetalTuning {
        var chosen = MetalTuning.fitted(config: config, batch: batch)
        if let table {
            let ctx = source
            guard table.object != nil else { throw MambaFailure.format("\(ctx): must be a JSON object") }
            guard table["schema"]?.string == schema else {
                throw MambaFailure.format("\(ctx): \"schema\" must be \"\(schema)\"")
            }
            guard let entries = table["entries"]?.array else { throw MambaFailure.format("\(ctx): \"entries\" must be a list") }
            let key = shapeKey(config)
            var best: (batchDistance: Int, params: MetalTuning)? = nil
            for (i, e) in entries.enumerated() {
                let ectx = "\(ctx): entries[\(i)]"
                guard let g = e["gpu"]?.string, let s = e["shape"]?.string, let b = e["batch"]?.int, b >= 1,
                      let p = e["params"]
                else { throw MambaFailure.format("\(ectx) needs \"gpu\", \"shape\", \"batch\" (≥ 1) and \"params\"") }
                let params = try MetalTuning.params(p, context: ectx, base: chosen)
                guard g == gpu, s == key else { continue }
                let distance = abs(b - batch)
                if best == nil || distance < best!.batchDistance { best = (distance, params) }
            }
            if let best { chosen = best.params }
        }
        if let tuning { chosen = try params(tuning, context: "options.tuning", base: chosen) }
        return chosen
    }
}
