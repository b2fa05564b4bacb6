// Scratch of the chunked prefill, sized at load for one block of prompt tokens (one sequence at a time)
// and placed in the model's arena with everything else (rows of MetalBufferLayout). Every layer reuses it.
#if canImport(Metal)
import Metal
#else
import MetalCompat
#endif

/// The chunked prefill's buffers, with their shapes for a block of `capacity` tokens (T) of `chunks` chunks.
enum MetalPrefillBuffer: String, CaseIterable {
    case residual, zxbcdt, xbc, dt, cumsum, cb, states, gated, count

    func shape(config c: MambaConfig, capacity T: Int) -> BufferShape {
        let chunks = T / c.chunkSize, Q = c.chunkSize, f = 4
        switch self {
        // (T, d_model) f32
        case .residual: return BufferShape(rows: T, rowBytes: f * c.dModel)
        // (T, d_in_proj) f32: in_proj output z | x B C | dt
        case .zxbcdt: return BufferShape(rows: T, rowBytes: f * c.dInProj)
        // (T, conv_dim) f32: silu(conv) of x B C
        case .xbc: return BufferShape(rows: T, rowBytes: f * c.convDim)
        // (n_heads, T) f32: clamped softplus dt
        case .dt: return BufferShape(rows: c.nHeads, rowBytes: f * T)
        // (n_heads, 2, T) f32: Σ dt·A within each chunk as hi + lo (ssd_prefill.metal's chunk_cumsum says why)
        case .cumsum: return BufferShape(rows: c.nHeads, rowBytes: 2 * f * T)
        // (chunks, n_groups, Q, Q) f32: C·Bᵀ, causal
        case .cb: return BufferShape(rows: chunks * c.nGroups, rowBytes: f * Q * Q)
        // (chunks, n_heads, head_dim, d_state) f32: each chunk's own state, then its start state
        case .states: return BufferShape(rows: chunks * c.nHeads, rowBytes: f * c.headDim * c.dState)
        // (T, d_inner) f32: y · silu(z)
        case .gated: return BufferShape(rows: T, rowBytes: f * c.dInner)
        // u32: tokens in the block being run
        case .count: return BufferShape(rows: 1, rowBytes: 16)
        }
    }
}

struct MetalPrefillBuffers {
    /// Tokens per block (a whole number of chunks) and chunks per block.
    let capacity: Int, chunks: Int

    let residual, zxbcdt, xbc, dt, cumsum, cb, states, gated, count: PlacedBuffer

    /// Prompt tokens per block: whole chunks, about `target` tokens (at least one chunk).
    static func capacity(config c: MambaConfig, target: Int) -> Int { c.chunkSize * max(1, target / c.chunkSize) }

    init(arena: MetalArena, config c: MambaConfig, capacity: Int) throws {
        self.capacity = capacity
        chunks = capacity / c.chunkSize
        func placed(_ p: MetalPrefillBuffer) throws -> PlacedBuffer { try arena.buffer(.prefill(p)) }
        residual = try placed(.residual)
        zxbcdt = try placed(.zxbcdt)
        xbc = try placed(.xbc)
        dt = try placed(.dt)
        cumsum = try placed(.cumsum)
        cb = try placed(.cb)
        states = try placed(.states)
        gated = try placed(.gated)
        count = try placed(.count)
    }

    /// Sets the token count the next block's kernels read.
    func setCount(_ n: Int) { count.buffer.contents().storeBytes(of: UInt32(n), as: UInt32.self) }
}
