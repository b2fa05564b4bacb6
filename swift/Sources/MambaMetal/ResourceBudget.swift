// What a model may make the engine allocate besides its weights.
//
// Every size in config.json is pinned by some tensor's shape, whose bytes the weight files must hold,
// except chunk_size, which no tensor has; and the recurrent state (d_inner × d_state per layer) is
// pinned only loosely (in_proj holds d_inner × d_model and d_state × d_model values). So a config.json
// next to a few kilobytes of weights could ask for terabytes of state and prefill scratch, which the
// backends would try to allocate (and, under overcommit, touch). The engine refuses a model whose
// per-sequence state and prefill scratch exceed what its weight files hold, with a floor for tiny
// models. Real checkpoints are far inside: mamba2-130m needs 20 MB per sequence next to 516 MB of f32
// weights.

enum ResourceBudget {
    /// Allowed for any model, however small its weights (the test fixtures need < 1 MB).
    static let floorBytes = 16 << 20

    /// Upper bound of the bytes either backend allocates for one sequence beyond the weights: the conv
    /// and SSM state, and the prefill's scratch for one block of whole chunks of about 256 tokens (the
    /// CPU backend's arena in mcpu_create, MetalPrefillBuffers): activations per token, C·Bᵀ per group and
    /// chunk, per-chunk states, one chunk × chunk decay matrix. nil when the count overflows.
    static func bytesPerSequence(_ c: MambaConfig) -> Int? {
        let q = c.chunkSize, block = q >= 256 ? q : q * (256 / q)
        let perToken = [2 * c.dModel, c.dInProj, c.convDim, c.dInner].reduce(0, +)
        let terms: [[Int]] = [
            [c.nLayer, c.convDim, c.dConv], // conv state
            [c.nLayer, c.nHeads, c.headDim, c.dState], // SSM state
            [block, perToken], // activations of a block
            [c.nGroups, block, q], // C·Bᵀ of every chunk of a block
            [block / q, c.nHeads, c.headDim, c.dState], // states entering each chunk
            [q, q], // decay matrix of one chunk
        ]
        var floats = 0
        for term in terms {
            var p = 1
            for f in term {
                let (v, o) = p.multipliedReportingOverflow(by: f)
                guard !o else { return nil }
                p = v
            }
            let (s, o) = floats.addingReportingOverflow(p)
            guard !o else { return nil }
            floats = s
        }
        let (bytes, o) = floats.multipliedReportingOverflow(by: 4)
        return o ? nil : bytes
    }

    /// Throws when the config asks for more per sequence than `weightBytes` (what the files hold) justify;
    /// `source` names where the sizes came from (a config.json, a GGUF file).
    static func check(_ c: MambaConfig, weightBytes: Int, source: String) throws {
        let limit = max(floorBytes, weightBytes)
        guard let need = bytesPerSequence(c), need <= limit else {
            let asked = bytesPerSequence(c).map { "\($0 >> 20) MiB" } ?? "more than 2^63 bytes"
            throw MambaFailure.format(
                "\(source): its sizes (d_state \(c.dState), chunk_size \(c.chunkSize), d_inner \(c.dInner), "
                    + "\(c.nLayer) layers) need \(asked) of state and scratch per sequence, more than the "
                    + "\(limit >> 20) MiB its weights justify")
        }
    }
}
