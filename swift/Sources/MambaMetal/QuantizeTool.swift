// `deno task quantize`: reads any checkpoint the engine reads and writes it in mlx-lm's quantized
// layout (MLXQuantized.swift): model.safetensors + config.json with "quantization". Float matrices are
// quantized by the same AffineQuantizer as load-time `dtype: "q8" | "q4"`, so loading the output gives
// the bytes load-time quantization gives. Matrices the source already stores quantized (MLX, GGUF) are
// dequantized and quantized again (the layout has one bits/group setting); their error adds up.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum QuantizeTool {
    static func run(source: String, destination: String, spec: QuantSpec, progress: Bool) throws {
        let say: (String) -> Void = { line in if progress { fputs("quantize: \(line)\n", stderr) } }
        say("reading \(source)")
        let w = try Engine.loadWeights(path: source, target: MatrixTarget())
        let c = w.config
        let target = MatrixTarget(dtype: spec.bits == 8 ? .q8 : .q4, groupSize: spec.groupSize)
        var done = 0
        let total = w.matrices.count
        func quantized(_ m: WeightMatrix) throws -> WeightMatrix {
            let float = m.quant == nil ? m : try m.converted(to: MatrixTarget(dtype: .f32))
            let q = try float.converted(to: target)
            done += 1
            say("\(done)/\(total) \(m.name) (\(m.rows)×\(m.cols)): \(q.quant == nil ? "kept \(q.dtype.rawValue): \(m.cols) columns do not divide into groups of \(spec.groupSize)" : q.dtype.rawValue)")
            return q
        }

        var out = SafeTensorsWriter()
        func addMatrix(_ module: String, _ m: WeightMatrix) {
            if let qs = m.quant {
                let groups = [m.rows, m.cols / qs.groupSize], st = m.scaleDType == .f16 ? "F16" : "F32"
                out.add(module + ".weight", "U32", [m.rows, m.cols * qs.bits / 32], m.data, m.rows * qs.codeBytes(cols: m.cols), keep: m)
                out.add(module + ".scales", st, groups, m.scales!, groups[0] * groups[1] * m.scaleDType.floatBytes, keep: m)
                out.add(module + ".biases", st, groups, m.biases!, groups[0] * groups[1] * m.scaleDType.floatBytes, keep: m)
            } else {
                out.add(module + ".weight", m.dtype.rawValue.uppercased(), [m.rows, m.cols], m.data, m.byteCount, keep: m)
            }
        }
        let embedding = try quantized(w.embedding)
        addMatrix("backbone.embeddings", embedding)
        if w.lmHead !== w.embedding { addMatrix("lm_head", try quantized(w.lmHead)) }
        out.add("backbone.norm_f.weight", w.normF, [c.dModel])
        for (i, l) in w.layers.enumerated() {
            let p = "backbone.layers.\(i)."
            addMatrix(p + "mixer.in_proj", try quantized(l.inProj))
            addMatrix(p + "mixer.out_proj", try quantized(l.outProj))
            out.add(p + "norm.weight", l.norm, [c.dModel])
            out.add(p + "mixer.conv1d.weight", l.convWeight, [c.convDim, c.dConv, 1]) // mlx-lm's Conv1d layout
            out.add(p + "mixer.conv1d.bias", l.convBias, [c.convDim])
            out.add(p + "mixer.dt_bias", l.dtBias, [c.nHeads])
            out.add(p + "mixer.A_log", l.aLog, [c.nHeads])
            out.add(p + "mixer.D", l.D, [c.nHeads])
            out.add(p + "mixer.norm.weight", l.gatedNorm, [c.dInner])
        }

        if mkdir(destination, 0o755) != 0 && errno != EEXIST {
            throw MambaFailure.io("cannot create \(destination): \(String(cString: strerror(errno)))")
        }
        guard isDirectory(destination) else { throw MambaFailure.io("\(destination) is not a directory") }
        say("writing \(destination)/model.safetensors")
        try out.write(to: destination + "/model.safetensors")
        let quant: JSON = .object([
            "group_size": .number(Double(spec.groupSize)), "bits": .number(Double(spec.bits)), "mode": .string("affine"),
        ])
        var config = configJSON(c).object!
        config["quantization"] = quant
        config["quantization_config"] = quant
        try writeFile(destination + "/config.json", JSON.object(config).text + "\n")
        say("done")
    }

    /// config.json in the transformers format (what mlx-lm reads too).
    static func configJSON(_ c: MambaConfig) -> JSON {
        .object([
            "architectures": .array([.string("Mamba2ForCausalLM")]), "model_type": .string("mamba2"),
            "hidden_size": .number(Double(c.dModel)), "num_hidden_layers": .number(Double(c.nLayer)),
            "vocab_size": .number(Double(c.vocabSize)), "state_size": .number(Double(c.dState)),
            "conv_kernel": .number(Double(c.dConv)), "expand": .number(Double(c.expand)),
            "intermediate_size": .number(Double(c.dInner)), "head_dim": .number(Double(c.headDim)),
            "num_heads": .number(Double(c.nHeads)), "n_groups": .number(Double(c.nGroups)),
            "chunk_size": .number(Double(c.chunkSize)), "layer_norm_epsilon": .number(c.eps),
            "tie_word_embeddings": .bool(c.tieEmbeddings), "use_bias": .bool(false), "use_conv_bias": .bool(true),
            "hidden_act": .string("silu"), "residual_in_fp32": .bool(true), "time_step_rank": .string("auto"),
            "time_step_limit": .array([
                .number(c.timeStepMin),
                c.timeStepMax.isFinite ? .number(c.timeStepMax) : .object(["__float__": .string("Infinity")]),
            ]),
        ])
    }

    static func writeFile(_ path: String, _ text: String) throws {
        guard let f = fopen(path, "wb") else { throw MambaFailure.io("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { fclose(f) }
        let bytes = Array(text.utf8)
        guard fwrite(bytes, 1, bytes.count, f) == bytes.count else { throw MambaFailure.io("cannot write \(path)") }
    }
}

/// Writes a safetensors file from memory the caller keeps alive. 4-byte tensors come first, so every
/// tensor starts aligned to its element size (the format allows no gaps between tensors).
struct SafeTensorsWriter {
    private struct Entry {
        let name: String, dtype: String, shape: [Int], data: UnsafeRawPointer, bytes: Int
        let keep: AnyObject?
    }
    private var entries: [Entry] = []
    private var floatArrays: [OwnedBytes] = []

    mutating func add(_ name: String, _ dtype: String, _ shape: [Int], _ data: UnsafeRawPointer, _ bytes: Int,
                      keep: AnyObject?) {
        entries.append(Entry(name: name, dtype: dtype, shape: shape, data: data, bytes: bytes, keep: keep))
    }

    mutating func add(_ name: String, _ values: [Float], _ shape: [Int]) {
        let buf = OwnedBytes(count: 4 * values.count)
        buf.pointer.copyMemory(from: values, byteCount: buf.count)
        floatArrays.append(buf)
        add(name, "F32", shape, UnsafeRawPointer(buf.pointer), buf.count, keep: buf)
    }

    func write(to path: String) throws {
        let ordered = entries.enumerated().sorted { a, b in
            let wa = a.element.dtype == "F32" || a.element.dtype == "U32", wb = b.element.dtype == "F32" || b.element.dtype == "U32"
            return wa != wb ? wa : a.offset < b.offset
        }.map(\.element)
        var header: [String: JSON] = ["__metadata__": .object(["format": .string("mlx")])]
        var offset = 0
        for e in ordered {
            header[e.name] = .object([
                "dtype": .string(e.dtype), "shape": .array(e.shape.map { .number(Double($0)) }),
                "data_offsets": .array([.number(Double(offset)), .number(Double(offset + e.bytes))]),
            ])
            offset += e.bytes
        }
        var text = Array(JSON.object(header).text.utf8)
        while text.count % 8 != 0 { text.append(0x20) }
        let tmp = path + ".partial"
        guard let f = fopen(tmp, "wb") else { throw MambaFailure.io("cannot write \(tmp): \(String(cString: strerror(errno)))") }
        var ok = true
        var len = UInt64(text.count).littleEndian
        ok = ok && fwrite(&len, 8, 1, f) == 1
        ok = ok && fwrite(text, 1, text.count, f) == text.count
        for e in ordered where ok { ok = fwrite(e.data, 1, e.bytes, f) == e.bytes }
        ok = (fclose(f) == 0) && ok
        guard ok, rename(tmp, path) == 0 else {
            unlink(tmp)
            throw MambaFailure.io("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
