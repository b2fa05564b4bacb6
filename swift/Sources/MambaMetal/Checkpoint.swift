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
        let configPath = dir + "/config.json"
        guard fileExists(configPath) else { throw MambaFailure.io("\(configPath) is missing") }
        let configFile = try MappedFile(path: configPath)
        let configJSON = try JSON.parse(UnsafeRawBufferPointer(start: configFile.base, count: configFile.size),
                                        context: configPath)
        let config = try MambaConfig.parse(configJSON, file: configPath)
        let quantization = try MLXQuantization.parse(configJSON["quantization"], file: configPath)

        var views: [TensorView] = []
        var unusable: [String: String] = [:]
        var packedViews: [PackedView] = []
        var files: [String] = []
        let single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json"
        let torchBin = dir + "/pytorch_model.bin"
        if fileExists(single) {
            (views, unusable, packedViews) = try SafeTensors.read(path: single)
            files = [single]
        } else if fileExists(index) {
            files = try shardFiles(index: index, dir: dir)
            for f in files {
                let (v, u, p) = try SafeTensors.read(path: f)
                views += v
                packedViews += p
                unusable.merge(u) { a, _ in a }
            }
        } else if fileExists(torchBin) {
            views = try readTorchCheckpoint(path: torchBin)
            files = [torchBin]
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
                          quantization: quantization, weightFiles: files)
    }

    /// The shard files named by a model.safetensors.index.json, in a stable order.
    private static func shardFiles(index: String, dir: String) throws -> [String] {
        let f = try MappedFile(path: index)
        let json = try JSON.parse(UnsafeRawBufferPointer(start: f.base, count: f.size), context: index)
        guard let map = json["weight_map"]?.object else {
            throw MambaFailure.format("\(index): no \"weight_map\" object")
        }
        var names = Set<String>()
        for (tensor, file) in map {
            guard let s = file.string, !s.contains("/"), !s.isEmpty else {
                throw MambaFailure.format("\(index): weight_map entry for \(tensor) is not a file name in \(dir)")
            }
            names.insert(s)
        }
        let paths = names.sorted().map { dir + "/" + $0 }
        for p in paths where !fileExists(p) { throw MambaFailure.io("\(p) (named by \(index)) is missing") }
        return paths
    }
}
