// A model directory: config.json plus weights in one of the formats checkpoints ship in.

struct Checkpoint {
    let directory: String
    let config: MambaConfig
    /// Every usable tensor by name (F32/F16/BF16), views into memory-mapped files.
    let tensors: [String: TensorView]
    /// Tensors present with a dtype the engine cannot use: name → dtype.
    let unusable: [String: String]
    /// Which files the weights came from (for messages).
    let weightFiles: [String]

    static func load(directory dir: String) throws -> Checkpoint {
        guard fileExists(dir) else { throw MambaFailure.io("model directory \(dir) does not exist") }
        guard isDirectory(dir) else { throw MambaFailure.io("\(dir) is not a directory") }
        let configPath = dir + "/config.json"
        guard fileExists(configPath) else { throw MambaFailure.io("\(configPath) is missing") }
        let configFile = try MappedFile(path: configPath)
        let config = try MambaConfig.parse(
            JSON.parse(UnsafeRawBufferPointer(start: configFile.base, count: configFile.size), context: configPath),
            file: configPath)

        var views: [TensorView] = []
        var unusable: [String: String] = [:]
        var files: [String] = []
        let single = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json"
        let torchBin = dir + "/pytorch_model.bin"
        if fileExists(single) {
            (views, unusable) = try SafeTensors.read(path: single)
            files = [single]
        } else if fileExists(index) {
            files = try shardFiles(index: index, dir: dir)
            for f in files {
                let (v, u) = try SafeTensors.read(path: f)
                views += v
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
        return Checkpoint(directory: dir, config: config, tensors: tensors, unusable: unusable, weightFiles: files)
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
