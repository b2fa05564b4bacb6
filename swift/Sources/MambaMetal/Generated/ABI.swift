// GENERATED from swift/include/mamba.h by tools/gen_abi.ts: do not edit; rerun `deno task gen:abi`.

/// MAMBA_ABI_VERSION: the C ABI this library implements.
let mambaABIVersion: UInt32 = 2

/// enum mamba_status: what every call that can fail returns.
enum MambaStatus: Int32, CaseIterable {
    case ok = 0
    /// bad argument: null pointer, sequence index, token count, options
    case argument = 1
    /// a file or directory is missing or unreadable
    case io = 2
    /// malformed config.json, safetensors, index or checkpoint
    case format = 3
    /// a tensor's shape or dtype disagrees with the config
    case shape = 4
    /// token id < 0 or >= vocab size
    case token = 5
    /// state bytes do not belong to this model
    case state = 6
    /// backend unavailable (no Metal device) or a device failure
    case backend = 7
    /// engine handle unknown or already freed
    case closed = 8
    /// a valid but unsupported model or option
    case unsupported = 9
    /// a bug: please report it
    case `internal` = 10
}

/// enum mamba_gpu_counter: mamba_gpu_counters' output, in this order.
enum GPUCounter: Int, CaseIterable {
    /// command buffers committed
    case commandBuffers = 0
    /// compute command encoders created
    case computeEncoders = 1
    /// kernel dispatches encoded
    case dispatches = 2
    /// buffers allocated (standalone or from a heap)
    case bufferAllocations = 3
    /// heaps allocated
    case heapAllocations = 4
    /// bytes allocated in buffers and heaps
    case allocatedBytes = 5
}

/// The keys of mamba_engine_create's options JSON (@option).
enum OptionKey: String, CaseIterable {
    /// "auto" (default: Metal where it is Apple's GPU, else the CPU) | "cpu" | "metal"
    case backend
    /// independent sequences stepped together, 1 to 256 (default 1; Metal: up to 8)
    case batchSize
    /// dtype of the large matrices: "auto" (as stored, default) | "f32" | "f16" | "bf16" | "q8" | "q4" (quantize at load, docs/quantization.md)
    case dtype
    /// q8/q4 at load: columns per scale/bias group, 32 | 64 | 128 (default 64)
    case groupSize
    /// CPU threads, 0 to 1024 (default 0: one per core)
    case threads
    /// Metal: encode the decode step once into an indirect command buffer and replay it every step (default false)
    case recorded
    /// Metal: "chunked" (default: the chunked SSD prefill kernels) | "tokens" (token by token through the decode kernels)
    case prefillMode
    /// Metal: a tuning table (the contents of configs/metal_tune.json, written by `deno task tune`); the entry for this GPU, model shape and nearest batch is used
    case tuneTable
    /// the file or URL tuneTable came from, which its errors name (default "metal_tune.json")
    case tuneTableSource
    /// Metal: kernel parameters that override the table, an object with these keys:
    case tuning
}

/// The keys of the "tuning" option and of the info's "tuning" (@tuning).
enum TuningKey: String, CaseIterable {
    /// rows of W per simdgroup of the in_proj matvec, 1 to 4 (default 2)
    case matvecRowsPerSimdgroup
    /// simdgroups sharing each row of the in_proj matvec, each a slice of K: 1, 2 or 4 (default 2)
    case matvecSplitK
    /// rows of W per simdgroup of the lm_head matvec, 1 to 4 (default 2)
    case lmHeadRowsPerSimdgroup
    /// simdgroups sharing each row of the lm_head matvec: 1, 2 or 4 (default 2)
    case lmHeadSplitK
    /// rows of W per simdgroup of the out_proj matvec, 1 to 4 (default 1)
    case outProjRowsPerSimdgroup
    /// simdgroups sharing each row of the out_proj matvec: 1, 2 or 4 (default 4)
    case outProjSplitK
    /// threadgroups per head of the SSM decode block, each a block of the head's rows: 1, 2, 4 or 8 (default: the smallest giving n_heads · split · batch ≥ 80 threadgroups, at most 8)
    case ssmSplit
    /// output tile side of the prefill matmul, 16 or 32 (default 32)
    case matmulTile
}

/// The keys of mamba_engine_info's JSON (@info).
enum InfoKey: String, CaseIterable {
    /// MAMBA_ABI_VERSION of the library
    case abiVersion
    /// the library version, as mamba_version
    case version
    /// "cpu" or "metal"
    case backend
    /// the instruction set and threads, or the GPU, for reports
    case device
    /// dtype of the large weight matrices: "f32", "f16", "bf16" or "mixed"
    case dtype
    /// sequences stepped together
    case batchSize
    /// logits per sequence (rows of the embedding)
    case vocabSize
    /// bytes of one sequence's saved state, as mamba_state_size
    case stateBytes
    /// CPU threads the backend runs on
    case threads
    /// bytes of weights one decode step reads
    case weightBytesPerToken
    /// bytes of state one decode step reads and writes (whole batch)
    case stateBytesPerToken
    /// one object per large matrix: {"name", "stored" (what the file held, e.g. "F16", "Q4_K", "MLX q4 g64, f16 scales"), "dtype" (what the backends read: f32|f16|bf16|q8|q4), "rows", "cols", "bytes", "groupSize" and "scaleDType" (q8/q4 only)}
    case matrices
    /// (metal only) the GPU's name
    case gpu
    /// (metal only) the model-shape key of tuning-table entries
    case tuneShape
    /// (metal only) whether decode replays an indirect command buffer
    case recorded
    /// (metal only) the kernel parameters in use (the @tuning keys of mamba_engine_create)
    case tuning
    /// (metal only) "chunked" or "tokens"
    case prefillMode
    /// (metal only) prompt tokens per command buffer of the chunked prefill
    case prefillBlock
    /// the model's shape, an object with these keys:
    case config
}

/// The keys of the info's "config" object (@config).
enum ConfigKey: String, CaseIterable {
    /// width of the residual stream
    case dModel
    /// Mamba2 blocks
    case nLayer
    /// SSM state size per head channel
    case dState
    /// channels per head
    case headDim
    /// SSM heads
    case nHeads
    /// groups of heads sharing B and C
    case nGroups
    /// causal convolution width
    case dConv
    /// dInner / dModel
    case expand
    /// expand × dModel
    case dInner
    /// rows of the embedding matrix
    case vocabSize
    /// RMSNorm epsilon
    case eps
    /// chunk length of the chunked (SSD) prefill
    case chunkSize
    /// whether lm_head is the embedding matrix
    case tieEmbeddings
    /// lower clamp of dt
    case timeStepMin
    /// upper clamp of dt (the string "Infinity" for none)
    case timeStepMax
}

/// The keys documented as @quantize in mamba.h.
enum QuantizeKey: String, CaseIterable {
    /// 4 | 8 (default 4)
    case bits
    /// 32 | 64 | 128 (default 64)
    case groupSize
    /// true: a line on stderr per tensor (default false)
    case progress
}
