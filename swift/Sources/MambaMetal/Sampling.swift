// Per-sequence samplers of an engine (mamba_sampler_set, mamba_sample): the parameters, the PRNG state
// and the set of ids the repetition penalty applies to, kept between steps; the arithmetic is
// CMambaCPU's sample.c, on the logits rows the backend wrote (shared memory for Metal too).
import CMambaCPU

/// mamba.h's `struct mamba_sampling`, which the C ABI takes: CMambaCPU declares the same fields as
/// `mcpu_sampling` (tests/abi.test.ts checks that the two declarations agree).
public typealias mamba_sampling = mcpu_sampling

/// One sequence's sampler: parameters, xoshiro128** state, and the ids seen so far (prompt and
/// samples), each once, for the repetition penalty.
final class SequenceSampler {
    /// Parameters and PRNG state, at a fixed address (the draws advance the state in place).
    let params: UnsafeMutablePointer<mcpu_sampling>
    private let vocab: Int
    private let seen: UnsafeMutablePointer<UInt8>   // (vocab) 1 once an id is in `penalized`
    let penalized: UnsafeMutablePointer<Int32>      // (vocab) distinct ids in the order first seen
    private(set) var count = 0

    init(vocab: Int) {
        self.vocab = vocab
        params = .allocate(capacity: 1)
        params.initialize(to: mcpu_sampling())
        seen = .allocate(capacity: vocab)
        seen.initialize(repeating: 0, count: vocab)
        penalized = .allocate(capacity: vocab)
    }

    deinit {
        params.deallocate()
        seen.deallocate()
        penalized.deallocate()
    }

    /// Forgets the history; then `params` and `history` are the new ones.
    func reset(params: mcpu_sampling, history: UnsafeBufferPointer<Int32>) {
        for i in 0..<count { seen[Int(penalized[i])] = 0 }
        count = 0
        self.params.pointee = params
        for id in history { accept(id) }
    }

    /// Adds an id to the history (ids outside the vocabulary are never penalised, as in the TS Sampler).
    func accept(_ id: Int32) {
        guard id >= 0, Int(id) < vocab, seen[Int(id)] == 0 else { return }
        seen[Int(id)] = 1
        penalized[count] = id
        count += 1
    }
}

/// The samplers of every sequence, and scratch for the draws: one per thread of the CPU backend's pool,
/// which samples the rows of a step in parallel (with the Metal backend they run one after another).
final class SamplerBank {
    private let rowLength: Int
    private var samplers: [SequenceSampler?]
    private let pool: OpaquePointer?
    private let scratch: UnsafeMutablePointer<OpaquePointer?> // [threads]
    private let threads: Int
    private let jobs: UnsafeMutablePointer<mcpu_sample_job>   // [batch]

    init(batch: Int, rowLength: Int, pool: OpaquePointer?, threads: Int) throws {
        self.rowLength = rowLength
        self.pool = pool
        self.threads = pool == nil ? 1 : max(threads, 1)
        samplers = Array(repeating: nil, count: batch)
        scratch = .allocate(capacity: self.threads)
        jobs = .allocate(capacity: batch)
        jobs.initialize(repeating: mcpu_sample_job(), count: batch)
        for t in 0..<self.threads {
            guard let s = mcpu_sample_scratch_create(Int32(rowLength)) else {
                for u in 0..<t { mcpu_sample_scratch_destroy(scratch[u]) }
                scratch.deallocate()
                jobs.deallocate()
                throw MambaFailure.backend("cannot allocate the sampler's scratch memory")
            }
            scratch[t] = s
        }
    }

    deinit {
        for t in 0..<threads { mcpu_sample_scratch_destroy(scratch[t]) }
        scratch.deallocate()
        jobs.deallocate()
    }

    /// Checks parameters as the TypeScript Sampler's options are checked; `vocab` 0 means the whole row.
    func set(seq: Int, params raw: mcpu_sampling, history: UnsafeBufferPointer<Int32>) throws {
        var p = raw
        if p.vocab == 0 { p.vocab = Int32(rowLength) }
        guard p.temperature >= 0, p.temperature.isFinite else {
            throw MambaFailure.argument("sampling: temperature must be a finite number ≥ 0, got \(p.temperature)")
        }
        guard p.top_k >= 0 else { throw MambaFailure.argument("sampling: top_k must be ≥ 0, got \(p.top_k)") }
        guard p.top_p > 0, p.top_p <= 1 else {
            throw MambaFailure.argument("sampling: top_p must be in (0, 1], got \(p.top_p)")
        }
        guard p.min_p >= 0, p.min_p <= 1 else {
            throw MambaFailure.argument("sampling: min_p must be in [0, 1], got \(p.min_p)")
        }
        guard p.repetition_penalty > 0, p.repetition_penalty.isFinite else {
            throw MambaFailure.argument("sampling: repetition_penalty must be a positive number, got \(p.repetition_penalty)")
        }
        guard p.vocab >= 1, Int(p.vocab) <= rowLength else {
            throw MambaFailure.argument("sampling: vocab must be from 1 to \(rowLength) (0: all), got \(raw.vocab)")
        }
        guard p.rng_state.0 | p.rng_state.1 | p.rng_state.2 | p.rng_state.3 != 0 else {
            throw MambaFailure.argument("sampling: the xoshiro128** state must not be all zero")
        }
        let sampler = samplers[seq] ?? SequenceSampler(vocab: rowLength)
        sampler.reset(params: p, history: history)
        samplers[seq] = sampler
    }

    /// The PRNG state of a sequence's sampler.
    func rngState(seq: Int) throws -> (UInt32, UInt32, UInt32, UInt32) {
        guard let s = samplers[seq] else { throw noSampler(seq) }
        return s.params.pointee.rng_state
    }

    private func noSampler(_ seq: Int) -> MambaFailure {
        .argument("sequence \(seq) has no sampler: call mamba_sampler_set first")
    }

    /// Checks every sequence before any draw, so that a failed call changes nothing.
    func check(seqs: UnsafeBufferPointer<Int32>, batch: Int) throws {
        for (i, s) in seqs.enumerated() {
            guard s >= 0, Int(s) < batch else {
                throw MambaFailure.argument("sequence index \(s) at position \(i) is out of range [0, \(batch))")
            }
            guard samplers[Int(s)] != nil else { throw noSampler(Int(s)) }
            for j in 0..<i where seqs[j] == s {
                throw MambaFailure.argument("sequence \(s) is listed twice")
            }
        }
    }

    /// out[i] = a token drawn from logits row seqs[i]; each becomes part of its sequence's history.
    func sample(logits: UnsafePointer<Float>, seqs: UnsafeBufferPointer<Int32>, out: UnsafeMutablePointer<Int32>) {
        for (i, s) in seqs.enumerated() {
            let sampler = samplers[Int(s)]!
            jobs[i] = mcpu_sample_job(row: logits + Int(s) * rowLength, params: sampler.params,
                                      penalized: sampler.penalized, n_penalized: Int32(sampler.count), token: 0)
        }
        if let pool, seqs.count > 1 {
            mcpu_sample_rows(pool, scratch, jobs, Int32(seqs.count))
        } else {
            for i in 0..<seqs.count {
                let j = jobs[i]
                jobs[i].token = mcpu_sample(scratch[0], j.row, j.params, j.penalized, j.n_penalized)
            }
        }
        for (i, s) in seqs.enumerated() {
            samplers[Int(s)]!.accept(jobs[i].token)
            out[i] = jobs[i].token
        }
    }
}
