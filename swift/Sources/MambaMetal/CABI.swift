// The C ABI (../../include/mamba.h). Every entry point validates its handle and arguments, catches
// every error and reports it through the status code and mamba_last_error(); nothing here traps.
import CMambaCPU

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Live engine handles. A freed or forged handle is refused instead of dereferenced.
private final class Registry {
    private var live = Set<UnsafeMutableRawPointer>()
    private var lock = pthread_mutex_t()

    init() { pthread_mutex_init(&lock, nil) }

    func insert(_ p: UnsafeMutableRawPointer) {
        pthread_mutex_lock(&lock)
        live.insert(p)
        pthread_mutex_unlock(&lock)
    }

    func remove(_ p: UnsafeMutableRawPointer) -> Bool {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return live.remove(p) != nil
    }

    func contains(_ p: UnsafeMutableRawPointer) -> Bool {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        return live.contains(p)
    }
}

private let registry = Registry()

private func setLastError(_ message: String) {
    let buf = mcpu_error_buffer()!
    let cap = Int(mcpu_error_buffer_size()) - 1
    var bytes = Array(message.utf8.prefix(cap))
    // Never cut a UTF-8 sequence in half.
    while let last = bytes.last, last & 0xC0 == 0x80 || (bytes.count == cap && last >= 0xC0) {
        bytes.removeLast()
        if last & 0xC0 != 0x80 { break }
    }
    for (i, b) in bytes.enumerated() { buf[i] = CChar(bitPattern: b) }
    buf[bytes.count] = 0
}

private func fail(_ f: MambaFailure) -> Int32 {
    setLastError(f.message)
    return f.kind.rawValue
}

/// Runs `body` with the engine behind `handle`, turning every failure into a status code.
private func withEngine(_ handle: OpaquePointer?, _ body: (Engine) throws -> Void) -> Int32 {
    guard let h = handle.map(UnsafeMutableRawPointer.init), registry.contains(h) else {
        return fail(.init(kind: .closed, message: "engine handle is closed or invalid"))
    }
    let engine = Unmanaged<Engine>.fromOpaque(h).takeUnretainedValue()
    do {
        try body(engine)
        return 0
    } catch let f as MambaFailure {
        return fail(f)
    } catch {
        return fail(.internalError("\(error)"))
    }
}

/// Deno passes NULL for an empty array: an empty buffer then, so the engine reports the count.
private func tokenBuffer(_ tokens: UnsafePointer<Int32>?, _ n: Int32) throws -> UnsafeBufferPointer<Int32> {
    guard n >= 0 else { throw MambaFailure.argument("n_tokens \(n) < 0") }
    if n == 0 { return UnsafeBufferPointer(start: nil, count: 0) }
    guard let tokens else { throw MambaFailure.argument("tokens is NULL") }
    return UnsafeBufferPointer(start: tokens, count: Int(n))
}

private func engineOrNil(_ handle: OpaquePointer?) -> Engine? {
    guard let h = handle.map(UnsafeMutableRawPointer.init), registry.contains(h) else {
        setLastError("engine handle is closed or invalid")
        return nil
    }
    return Unmanaged<Engine>.fromOpaque(h).takeUnretainedValue()
}

#if compiler(>=6.3.1)
@c(mamba_abi_version)
#else
@_cdecl("mamba_abi_version")
#endif
public func mambaABIVersionC() -> UInt32 { mambaABIVersion }

private let versionCString = strdup(mambaVersion)!

#if compiler(>=6.3.1)
@c(mamba_version)
#else
@_cdecl("mamba_version")
#endif
public func mambaVersionC() -> UnsafePointer<CChar> { UnsafePointer(versionCString) }

#if compiler(>=6.3.1)
@c(mamba_last_error)
#else
@_cdecl("mamba_last_error")
#endif
public func mambaLastError() -> UnsafePointer<CChar> { UnsafePointer(mcpu_error_buffer()!) }

#if compiler(>=6.3.1)
@c(mamba_engine_create)
#else
@_cdecl("mamba_engine_create")
#endif
public func mambaEngineCreate(_ dir: UnsafePointer<CChar>?, _ options: UnsafePointer<CChar>?,
                              _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let out else { return fail(.argument("out_engine is NULL")) }
    out.pointee = nil
    guard let dir else { return fail(.argument("model_dir is NULL")) }
    do {
        let opts = try EngineOptions.parse(options.map { String(cString: $0) })
        let engine = try Engine(directory: String(cString: dir), options: opts)
        let h = Unmanaged.passRetained(engine).toOpaque()
        registry.insert(h)
        out.pointee = OpaquePointer(h)
        return 0
    } catch let f as MambaFailure {
        return fail(f)
    } catch {
        return fail(.internalError("\(error)"))
    }
}

#if compiler(>=6.3.1)
@c(mamba_engine_free)
#else
@_cdecl("mamba_engine_free")
#endif
public func mambaEngineFree(_ handle: OpaquePointer?) -> Int32 {
    guard let handle else { return 0 }
    let h = UnsafeMutableRawPointer(handle)
    guard registry.remove(h) else { return fail(.init(kind: .closed, message: "engine handle is closed or invalid")) }
    Unmanaged<Engine>.fromOpaque(h).release()
    return 0
}

#if compiler(>=6.3.1)
@c(mamba_engine_info)
#else
@_cdecl("mamba_engine_info")
#endif
public func mambaEngineInfo(_ handle: OpaquePointer?) -> UnsafePointer<CChar>? {
    engineOrNil(handle).map { UnsafePointer($0.info) }
}

#if compiler(>=6.3.1)
@c(mamba_engine_logits)
#else
@_cdecl("mamba_engine_logits")
#endif
public func mambaEngineLogits(_ handle: OpaquePointer?) -> UnsafeMutablePointer<Float>? {
    engineOrNil(handle)?.backend.logits
}

#if compiler(>=6.3.1)
@c(mamba_step)
#else
@_cdecl("mamba_step")
#endif
public func mambaStep(_ handle: OpaquePointer?, _ tokens: UnsafePointer<Int32>?, _ n: Int32) -> Int32 {
    withEngine(handle) { e in
        try e.step(try tokenBuffer(tokens, n))
    }
}

#if compiler(>=6.3.1)
@c(mamba_step_seqs)
#else
@_cdecl("mamba_step_seqs")
#endif
public func mambaStepSeqs(_ handle: OpaquePointer?, _ tokens: UnsafePointer<Int32>?, _ seqs: UnsafePointer<Int32>?,
                          _ n: Int32) -> Int32 {
    withEngine(handle) { e in
        try e.step(try tokenBuffer(tokens, n), seqs: try tokenBuffer(seqs, n))
    }
}

#if compiler(>=6.3.1)
@c(mamba_sampler_set)
#else
@_cdecl("mamba_sampler_set")
#endif
public func mambaSamplerSet(_ handle: OpaquePointer?, _ seq: Int32, _ params: UnsafePointer<mamba_sampling>?,
                            _ history: UnsafePointer<Int32>?, _ n: Int32) -> Int32 {
    withEngine(handle) { e in
        guard let params else { throw MambaFailure.argument("params is NULL") }
        try e.setSampler(seq: Int(seq), params: params.pointee, history: try tokenBuffer(history, n))
    }
}

#if compiler(>=6.3.1)
@c(mamba_sample)
#else
@_cdecl("mamba_sample")
#endif
public func mambaSample(_ handle: OpaquePointer?, _ seqs: UnsafePointer<Int32>?, _ n: Int32,
                        _ out: UnsafeMutablePointer<Int32>?) -> Int32 {
    withEngine(handle) { e in
        let list = try tokenBuffer(seqs, n)
        guard let out else {
            if n == 0 { return }
            throw MambaFailure.argument("out_tokens is NULL")
        }
        try e.sample(seqs: list, out: out)
    }
}

#if compiler(>=6.3.1)
@c(mamba_sampler_rng)
#else
@_cdecl("mamba_sampler_rng")
#endif
public func mambaSamplerRNG(_ handle: OpaquePointer?, _ seq: Int32, _ out: UnsafeMutablePointer<UInt32>?) -> Int32 {
    withEngine(handle) { e in
        guard let out else { throw MambaFailure.argument("out_state is NULL") }
        guard seq >= 0, Int(seq) < e.batch else {
            throw MambaFailure.argument("sequence index \(seq) is out of range [0, \(e.batch))")
        }
        let s = try e.samplers.rngState(seq: Int(seq))
        (out[0], out[1], out[2], out[3]) = s
    }
}

#if compiler(>=6.3.1)
@c(mamba_prefill)
#else
@_cdecl("mamba_prefill")
#endif
public func mambaPrefill(_ handle: OpaquePointer?, _ tokens: UnsafePointer<Int32>?, _ n: Int32, _ seq: Int32) -> Int32 {
    withEngine(handle) { e in
        try e.prefill(try tokenBuffer(tokens, n), seq: Int(seq))
    }
}

#if compiler(>=6.3.1)
@c(mamba_reset)
#else
@_cdecl("mamba_reset")
#endif
public func mambaReset(_ handle: OpaquePointer?, _ seq: Int32) -> Int32 {
    withEngine(handle) { try $0.reset(seq: Int(seq)) }
}

#if compiler(>=6.3.1)
@c(mamba_state_size)
#else
@_cdecl("mamba_state_size")
#endif
public func mambaStateSize(_ handle: OpaquePointer?) -> Int64 {
    engineOrNil(handle).map { Int64($0.stateSize) } ?? -1
}

#if compiler(>=6.3.1)
@c(mamba_state_save)
#else
@_cdecl("mamba_state_save")
#endif
public func mambaStateSave(_ handle: OpaquePointer?, _ seq: Int32, _ out: UnsafeMutablePointer<UInt8>?,
                           _ size: Int64) -> Int32 {
    withEngine(handle) { e in
        guard let out, size >= 0 else { throw MambaFailure.argument("out is NULL or size < 0") }
        try e.saveState(seq: Int(seq), into: UnsafeMutableRawBufferPointer(start: out, count: Int(size)))
    }
}

#if compiler(>=6.3.1)
@c(mamba_state_load)
#else
@_cdecl("mamba_state_load")
#endif
public func mambaStateLoad(_ handle: OpaquePointer?, _ seq: Int32, _ data: UnsafePointer<UInt8>?,
                           _ size: Int64) -> Int32 {
    withEngine(handle) { e in
        guard let data, size >= 0 else { throw MambaFailure.argument("data is NULL or size < 0") }
        try e.loadState(seq: Int(seq), from: UnsafeRawBufferPointer(start: data, count: Int(size)))
    }
}

#if compiler(>=6.3.1)
@c(mamba_gpu_counters)
#else
@_cdecl("mamba_gpu_counters")
#endif
public func mambaGPUCounters(_ handle: OpaquePointer?, _ out: UnsafeMutablePointer<UInt64>?, _ n: Int32) -> Int32 {
    withEngine(handle) { e in
        guard let out, n >= 0 else { throw MambaFailure.argument("out is NULL or n < 0") }
        for (i, v) in e.backend.counters().array.prefix(Int(n)).enumerated() { out[i] = v }
    }
}

#if compiler(>=6.3.1)
@c(mamba_read_bandwidth)
#else
@_cdecl("mamba_read_bandwidth")
#endif
public func mambaReadBandwidth(_ bytes: Int64, _ passes: Int32, _ threads: Int32,
                               _ out: UnsafeMutablePointer<Double>?) -> Int32 {
    guard let out else { return fail(.argument("out_gbs is NULL")) }
    guard bytes >= 1 << 20, bytes <= 1 << 40, (1...1000).contains(passes), (0...1024).contains(threads) else {
        return fail(.argument("bandwidth probe: bytes must be 1 MiB to 1 TiB, passes 1 to 1000, threads 0 to 1024"))
    }
    let gbs = mcpu_read_bandwidth(bytes, passes, threads)
    guard gbs > 0 else { return fail(.backend("bandwidth probe: cannot allocate \(bytes) bytes")) }
    out.pointee = gbs
    return 0
}

#if compiler(>=6.3.1)
@c(mamba_quantize)
#else
@_cdecl("mamba_quantize")
#endif
public func mambaQuantize(_ src: UnsafePointer<CChar>?, _ dst: UnsafePointer<CChar>?,
                          _ options: UnsafePointer<CChar>?) -> Int32 {
    guard let src, let dst else { return fail(.argument("src and dst_dir must not be NULL")) }
    do {
        var bits = 4, group = 64, progress = false
        if let options, options.pointee != 0 {
            let json: JSON
            do { json = try JSON.parse(String(cString: options), context: "options") } catch let f as MambaFailure {
                throw MambaFailure.argument(f.message)
            }
            guard let o = json.object else { throw MambaFailure.argument("options must be a JSON object") }
            for (name, v) in o {
                // Every @quantize key of mamba.h is a case (Generated/ABI.swift).
                guard let key = QuantizeKey(rawValue: name) else { throw MambaFailure.argument("unknown option \"\(name)\"") }
                switch key {
                case .bits:
                    guard let b = v.int, b == 4 || b == 8 else { throw MambaFailure.argument("options.bits must be 4 or 8") }
                    bits = b
                case .groupSize:
                    guard let g = v.int, [32, 64, 128].contains(g) else {
                        throw MambaFailure.argument("options.groupSize must be 32, 64 or 128")
                    }
                    group = g
                case .progress:
                    guard let p = v.bool else { throw MambaFailure.argument("options.progress must be true or false") }
                    progress = p
                }
            }
        }
        try QuantizeTool.run(source: String(cString: src), destination: String(cString: dst),
                             spec: QuantSpec(bits: bits, groupSize: group), progress: progress)
        return 0
    } catch let f as MambaFailure {
        return fail(f)
    } catch {
        return fail(.internalError("\(error)"))
    }
}
