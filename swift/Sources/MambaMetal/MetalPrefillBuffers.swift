// Scratch of the chunked prefill, sized at load for one block of prompt tokens (one sequence at a time)
// and placed in the model's arena with everything else. Every layer reuses it.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

struct MetalPrefillBuffers {
    /// Tokens per block (a whole number of chunks) and chunks per block.
    let capacity: Int, chunks: Int

    let residual: any MTLBuffer  // (capacity, d_model) f32
    let zxbcdt: any MTLBuffer    // (capacity, d_in_proj) f32: in_proj output z | x B C | dt
    let xbc: any MTLBuffer       // (capacity, conv_dim) f32: silu(conv) of x B C
    let dt: any MTLBuffer        // (n_heads, capacity) f32: clamped softplus dt
    let cumsum: any MTLBuffer    // (n_heads, 2, capacity) f32: Σ dt·A within each chunk, as hi + lo
    let cb: any MTLBuffer        // (chunks, n_groups, chunk, chunk) f32: C·Bᵀ, causal
    let states: any MTLBuffer    // (chunks, n_heads, head_dim, d_state) f32: per-chunk, then start states
    let gated: any MTLBuffer     // (capacity, d_inner) f32: y · silu(z)
    let count: any MTLBuffer     // u32: tokens in the block being run

    /// Prompt tokens per block: whole chunks, about `target` tokens (at least one chunk).
    static func capacity(config c: MambaConfig, target: Int) -> Int { c.chunkSize * max(1, target / c.chunkSize) }

    /// Byte lengths in allocation order, for sizing the arena.
    static func lengths(config c: MambaConfig, capacity: Int) -> [Int] {
        let T = capacity, chunks = capacity / c.chunkSize, Q = c.chunkSize, f = 4
        return [
            f * T * c.dModel, f * T * c.dInProj, f * T * c.convDim, f * c.nHeads * T, 2 * f * c.nHeads * T,
            f * chunks * c.nGroups * Q * Q, f * chunks * c.nHeads * c.headDim * c.dState, f * T * c.dInner, 16,
        ]
    }

    init(arena: MetalArena, config c: MambaConfig, capacity: Int) throws {
        self.capacity = capacity
        chunks = capacity / c.chunkSize
        let l = MetalPrefillBuffers.lengths(config: c, capacity: capacity)
        residual = try arena.buffer(l[0], label: "prefill residual")
        zxbcdt = try arena.buffer(l[1], label: "prefill zxbcdt")
        xbc = try arena.buffer(l[2], label: "prefill xbc")
        dt = try arena.buffer(l[3], label: "prefill dt")
        cumsum = try arena.buffer(l[4], label: "prefill dA cumsum")
        cb = try arena.buffer(l[5], label: "prefill C·Bᵀ")
        states = try arena.buffer(l[6], label: "prefill chunk states")
        gated = try arena.buffer(l[7], label: "prefill gated")
        count = try arena.buffer(l[8], label: "prefill count")
    }

    /// Sets the token count the next block's kernels read.
    func setCount(_ n: Int) { count.contents().storeBytes(of: UInt32(n), as: UInt32.self) }
}
