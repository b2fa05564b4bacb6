// Fuzz targets: untrusted bytes into the real parsers, one entry per parser. The libFuzzer driver
// (swift/Fuzz, `deno task fuzz`) and the regression test (Tests/MambaMetalTests/FuzzRegressionTests)
// both run this table, so a target is added here once, with its seed folder in tests/fuzz/corpus/<name>.
//
// A target returns normally for input the parser accepts or refuses with a MambaFailure; anything
// else (another error type, a broken invariant of what was accepted) stops the process with
// fatalError, which libFuzzer records as a crash.

/// One parser under test.
struct FuzzTarget {
    let name: String
    /// Largest input the fuzzer generates (libFuzzer -max_len): enough for every seed.
    let maxLength: Int
    let run: (UnsafeRawBufferPointer) throws -> Void
}

enum FuzzTargets {
    static let all: [FuzzTarget] = [
        FuzzTarget(name: "json", maxLength: 4096, run: json),
        FuzzTarget(name: "config", maxLength: 4096, run: config),
        FuzzTarget(name: "safetensors", maxLength: 16384, run: safetensors),
        FuzzTarget(name: "index", maxLength: 4096, run: index),
        FuzzTarget(name: "torch", maxLength: 16384, run: torch),
        FuzzTarget(name: "pickle", maxLength: 8192, run: pickle),
        FuzzTarget(name: "checkpoint", maxLength: 32768, run: checkpoint),
        FuzzTarget(name: "state", maxLength: 16384, run: state),
        FuzzTarget(name: "gguf", maxLength: 32768, run: gguf),
        FuzzTarget(name: "gguf-model", maxLength: 32768, run: ggufModel),
    ]

    static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }

    /// Runs one input: returns the parser's refusal (a MambaFailure, its only way to refuse input), or nil
    /// when it accepted the input.
    @discardableResult
    static func run(_ target: FuzzTarget, _ bytes: UnsafeRawBufferPointer) -> MambaFailure? {
        do { try target.run(bytes) } catch let f as MambaFailure {
            return f
        } catch {
            fatalError("fuzz target \(target.name): a \(type(of: error)) escaped: \(error)")
        }
        return nil
    }

    /// The model `state` loads states into (tests/fuzz/state-model); set by the driver and the test.
    nonisolated(unsafe) static var stateModelDirectory = "tests/fuzz/state-model"

    // MARK: the targets

    /// The JSON reader. What it accepts serialises to text it reads back to the same text.
    static func json(_ bytes: UnsafeRawBufferPointer) throws {
        let v = try JSON.parse(bytes, context: "fuzz.json")
        let text = v.text
        let again: JSON
        do { again = try JSON.parse(text, context: "fuzz.json (serialised)") } catch {
            fatalError("json: serialised value does not parse: \(error)\n\(text)")
        }
        guard again.text == text else { fatalError("json: serialisation is not stable:\n\(text)\n\(again.text)") }
    }

    /// config.json in either format, then the sizes the backends derive from it.
    static func config(_ bytes: UnsafeRawBufferPointer) throws {
        let c = try MambaConfig.parse(JSON.parse(bytes, context: "config.json"), file: "config.json")
        _ = (c.dInProj, c.convDim, c.nHeads, ResourceBudget.bytesPerSequence(c), c.json.text)
    }

    /// A safetensors file: every tensor it accepts lies inside the data and has the bytes its shape needs.
    static func safetensors(_ bytes: UnsafeRawBufferPointer) throws {
        let file = try MappedFile(bytes: bytes, name: "model.safetensors")
        let (tensors, _, packed) = try SafeTensors.read(file: file)
        for t in tensors { touch(t, in: file) }
        for p in packed { touch(p.name, p.data, p.shape.reduce(1, *) * 4, in: file) }
    }

    /// model.safetensors.index.json.
    static func index(_ bytes: UnsafeRawBufferPointer) throws {
        let names = try Checkpoint.shardNames(index: MappedFile(bytes: bytes, name: "model.safetensors.index.json"))
        for n in names where n.isEmpty || n.contains("/") { fatalError("index: accepted shard name '\(n)'") }
    }

    /// pytorch_model.bin: the zip container, the pickle inside it, the tensor views.
    static func torch(_ bytes: UnsafeRawBufferPointer) throws {
        let file = try MappedFile(bytes: bytes, name: "pytorch_model.bin")
        for t in try readTorchCheckpoint(file: file) { touch(t, in: file) }
    }

    /// A data.pkl on its own (inside a zip the CRC check stops mutated pickles before the reader).
    static func pickle(_ bytes: UnsafeRawBufferPointer) throws {
        let u = try unpickle(bytes, source: "data.pkl")
        for t in u.tensors where !u.storages.indices.contains(t.storage) { fatalError("pickle: dangling storage") }
    }

    /// A whole model directory (config + safetensors, sharded safetensors or torch) loaded into an
    /// engine, which then prefills, steps and round-trips its state. The input is a list of files, each
    /// `[name length: u8][name][length: u32 little-endian][bytes]`.
    static func checkpoint(_ bytes: UnsafeRawBufferPointer) throws {
        let files = MemoryFiles(directory: "model", files: unpackFiles(bytes))
        var options = EngineOptions()
        options.backend = .cpu
        options.threads = 1
        options.batchSize = 2
        options.target = target(forLength: bytes.count)
        try exercise(Engine(checkpoint: Checkpoint.load(files), options: options))
    }

    /// A GGUF file's header, metadata and tensor table; then every tensor of a type the engine reads,
    /// converted as a matrix of ne[0]-element rows (each block type's conversion, whatever the shapes).
    static func gguf(_ bytes: UnsafeRawBufferPointer) throws {
        let file = try MappedFile(bytes: bytes, name: "model.gguf")
        let g = try GGUFFile.parse(UnsafeRawBufferPointer(start: file.base, count: file.size), file: file.path)
        for t in g.tensors {
            guard let n = t.byteCount else { continue }
            touch(t.name, file.base + t.offset, n, in: file)
            let m = try GGMLConvert.matrix(t, file: file)
            guard m.rows * m.cols == t.elementCount else { fatalError("gguf: \(t.name) converted to \(m.rows)×\(m.cols)") }
        }
    }

    /// A GGUF model file loaded into an engine (the `mamba2` loader: metadata, shapes, block
    /// conversions), which then prefills, steps and round-trips its state.
    static func ggufModel(_ bytes: UnsafeRawBufferPointer) throws {
        let file = try MappedFile(bytes: bytes, name: "model.gguf")
        let g = try GGUFFile.parse(UnsafeRawBufferPointer(start: file.base, count: file.size), file: file.path)
        let form = target(forLength: bytes.count)
        let weights = try GGUFModel.build(g, file: file, target: form)
        var options = EngineOptions()
        options.backend = .cpu
        options.threads = 1
        options.batchSize = 2
        options.target = form
        try exercise(Engine(weights: weights, path: file.path, sizesFrom: file.path, options: options))
    }

    /// Saved-state bytes loaded into an engine: refused, or loaded so that saving gives them back.
    static func state(_ bytes: UnsafeRawBufferPointer) throws {
        let engine: Engine
        do { engine = try stateEngine.get() } catch {
            fatalError("state: cannot load the model in \(stateModelDirectory): \(error)")
        }
        try engine.loadState(seq: 1, from: bytes)
        var saved = [UInt8](repeating: 0, count: engine.stateSize)
        try saved.withUnsafeMutableBytes { try engine.saveState(seq: 1, into: $0) }
        guard saved.elementsEqual(bytes) else { fatalError("state: saving a loaded state gives other bytes") }
        try [Int32(1), Int32(2)].withUnsafeBufferPointer { try engine.step($0) }
    }

    // MARK: helpers

    /// The matrices' form for a model target, varied with the input's length: as stored, f16, or
    /// quantized at load to 8 bits in groups of 32 (where a matrix's columns allow).
    static func target(forLength n: Int) -> MatrixTarget {
        var t = MatrixTarget()
        switch n % 3 {
        case 1: t.dtype = .f16
        case 2: t.dtype = .q8; t.groupSize = 32
        default: break
        }
        return t
    }

    /// What every loaded model must survive: a prompt, a step of both sequences, a state round trip.
    private static func exercise(_ engine: Engine) throws {
        let tokens: [Int32] = [0, Int32(engine.config.vocabSize - 1)]
        try tokens.withUnsafeBufferPointer { try engine.prefill($0, seq: 1) }
        try tokens.withUnsafeBufferPointer { try engine.step($0) }
        try roundTripState(engine)
    }

    /// Splits a `checkpoint` input into files; a record cut short ends the list.
    static func unpackFiles(_ bytes: UnsafeRawBufferPointer) -> [String: [UInt8]] {
        var files: [String: [UInt8]] = [:]
        var i = 0
        while i < bytes.count {
            let nameLength = Int(bytes[i])
            guard bytes.count - i - 1 >= nameLength + 4 else { break }
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(i + 1)..<(i + 1 + nameLength)]), as: UTF8.self)
            i += 1 + nameLength
            var n = 0
            for k in 0..<4 { n |= Int(bytes[i + k]) << (8 * k) }
            i += 4
            let take = min(n, bytes.count - i)
            files[name] = Array(bytes[i..<(i + take)])
            i += take
        }
        return files
    }

    private static func touch(_ t: TensorView, in file: MappedFile) { touch(t.name, t.data, t.byteCount, in: file) }

    /// Reads a tensor's first and last byte: AddressSanitizer reports a view that leaves the file.
    private static func touch(_ name: String, _ data: UnsafeRawPointer, _ n: Int, in file: MappedFile) {
        guard n >= 0, data >= file.base, n <= file.base + file.size - data else {
            fatalError("tensor \(name): \(n) bytes at offset \(data - file.base) leave the \(file.size)-byte file")
        }
        if n > 0 { _ = data.load(as: UInt8.self) &+ data.load(fromByteOffset: n - 1, as: UInt8.self) }
    }

    private static func roundTripState(_ engine: Engine) throws {
        var saved = [UInt8](repeating: 0, count: engine.stateSize)
        try saved.withUnsafeMutableBytes { try engine.saveState(seq: 1, into: $0) }
        try saved.withUnsafeBytes { try engine.loadState(seq: 0, from: $0) }
    }

    /// One engine for every `state` input (loading it per input would cost more than the parse).
    nonisolated(unsafe) private static var stateEngine: Result<Engine, Error> = {
        var options = EngineOptions()
        options.backend = .cpu
        options.threads = 1
        options.batchSize = 2
        return Result { try Engine(directory: stateModelDirectory, options: options) }
    }()
}
