// A model directory: config.json plus weights in one of the formats checkpoints ship in.

struct Checkpoint {
    let directory: String
    let config: MambaConfig
    /// Every usable tensor by name (F32/F16/BF16), views into memory-mapped files.
    let tensors: [String: TensorView]
    /// Tensors present with a dtype the engine cannot use: name → dtype.
    let unusable: [String: String]
    /// U32 tensors: MLX's packed quantized weights.
    let packed: [String: PackedView]
    /// config.json's "quantization" (MLX), if any.
    let quantization: MLXQuantization?
    /// Which files the weights came from (for messages).
    let weightFiles: [String]

    /// The file holding tensor `name` (the directory if unknown), for messages.
    func fileOf(_ name: String) -> String { tensors[name]?.file.path ?? packed[name]?.file.path ?? directory }

    static func load(directory dir: String) throws -> Checkpoint {
        guard fileExists(dir) else { throw MambaFailure.io("model directory \(dir) does not exist") }
        guard isDirectory(dir) else { throw MambaFailure.io("\(dir) is not a directory") }
        return try load(DirectoryFiles(directory: dir))
    }

    /// Reads a checkpoint from `files`: a directory, or files held in memory (the fuzz targets).
    static func load(_ files: CheckpointFiles) throws -> Checkpoint {
        let dir = files.directory
        guard files.exists("config.json") else { throw MambaFailure.io("\(dir)/config.json is missing") }
        let configFile = try files.open("config.json")
        let configJSON = try JSON.parse(UnsafeRawBufferPointer(start: configFile.base, count: configFile.size),
                                        context: configFile.path)
        let config = try MambaConfig.parse(configJSON, file: configFile.path)
        let quantization = try MLXQuantization.parse(configJSON["quantization"], file: configFile.path)

        var views: [TensorView] = []
        var unusable: [String: String] = [:]
        var packedViews: [PackedView] = []
        var paths: [String] = []
        if files.exists("model.safetensors") {
            let f = try files.open("model.safetensors")
            (views, unusable, packedViews) = try SafeTensors.read(file: f)
            paths = [f.path]
        } else if files.exists("model.safetensors.index.json") {
            let index = try files.open("model.safetensors.index.json")
            for name in try shardNames(index: index) {
                guard files.exists(name) else { throw MambaFailure.io("\(dir)/\(name) (named by \(index.path)) is missing") }
                let f = try files.open(name)
                let (v, u, p) = try SafeTensors.read(file: f)
                views += v
                packedViews += p
                unusable.merge(u) { a, _ in a }
                paths.append(f.path)
            }
        } else if files.exists("pytorch_model.bin") {
            let f = try files.open("pytorch_model.bin")
            views = try readTorchCheckpoint(file: f)
            paths = [f.path]
        } else {
            throw MambaFailure.io(
                "\(dir) has no weights: expected model.safetensors, model.safetensors.index.json or pytorch_model.bin")
        }
        var tensors: [String: TensorView] = [:]
        for v in views {
            if tensors[v.name] != nil { throw MambaFailure.format("tensor \(v.name) appears twice in \(dir)") }
            tensors[v.name] = v
        }
        var packed: [String: PackedView] = [:]
        for v in packedViews {
            if tensors[v.name] != nil || packed[v.name] != nil {
                throw MambaFailure.format("tensor \(v.name) appears twice in \(dir)")
            }
            packed[v.name] = v
        }
        return Checkpoint(directory: dir, config: config, tensors: tensors, unusable: unusable, packed: packed,
                          quantization: quantization, weightFiles: paths)
    }

    /// The shard file names a model.safetensors.index.json names, in a stable order.
    static func shardNames(index f: MappedFile) throws -> [String] {
        let index = f.path
        let json = try JSON.parse(UnsafeRawBufferPointer(start: f.base, count: f.size), context: index)
        guard let map = json["weight_map"]?.object else {
            throw MambaFailure.format("\(index): no \"weight_map\" object")
        }
        var names = Set<String>()
        for (tensor, file) in map {
            guard let s = file.string, !s.contains("/"), !s.isEmpty else {
                throw MambaFailure.format("\(index): weight_map entry for \(tensor) is not a file name in the model directory")
            }
            names.insert(s)
        }
        return names.sorted()
    }
}

/// The files of a model: `directory` names it in messages; names are relative to it.
protocol CheckpointFiles {
    var directory: String { get }
    func exists(_ name: String) -> Bool
    func open(_ name: String) throws -> MappedFile
}

/// A model directory on disk; files are memory-mapped.
struct DirectoryFiles: CheckpointFiles {
    let directory: String

    func exists(_ name: String) -> Bool { fileExists(directory + "/" + name) }
    func open(_ name: String) throws -> MappedFile { try MappedFile(path: directory + "/" + name) }
}

/// Files held in memory, read through the same parsers (FuzzTargets.swift).
struct MemoryFiles: CheckpointFiles {
    let directory: String
    let files: [String: [UInt8]]

    func exists(_ name: String) -> Bool { files[name] != nil }
    func open(_ name: String) throws -> MappedFile {
        guard let bytes = files[name] else { throw MambaFailure.io("cannot open \(directory)/\(name)") }
        return try bytes.withUnsafeBytes { try MappedFile(bytes: $0, name: directory + "/" + name) }
    }
}
