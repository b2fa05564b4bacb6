// The trace: what the backend encodes, written as JSON lines for the GPU proxy (tools/gpu), which
// replays it on an NVIDIA GPU. Off unless METALCOMPAT_TRACE names a file when the first heap is made.
//
// It records heaps and the buffers placed in them; what the host wrote at load (MetalCompatTrace.fill,
// called by the backend's one upload function: a checkpoint tensor and the dtype it was stored as, or
// the bytes themselves when small); each compute pipeline (file, kernel, function-constant values); and
// per committed command buffer: the host's writes since the previous one (found by comparing the small
// buffers with a shadow copy), then every dispatch (pipeline, buffer bindings as heap offsets, setBytes
// data, threadgroup memory, grid), barrier and encoder, indirect command buffers resolved into the
// dispatches they run. A host write into a large buffer between command buffers cannot be replayed and
// is recorded as an `unsupported` event, which the replay refuses.
//
// METALCOMPAT_TRACE_DRY=1 records without running the kernels (results are then meaningless): enough to
// trace the plan of a large model quickly. Format: docs/gpu-proxy.md.
#if !canImport(Metal)
import Foundation

public enum MetalCompatTrace {
    /// Whether a trace is being written (METALCOMPAT_TRACE was set when the first heap was made).
    public static var isEnabled: Bool { recorder != nil }

    /// Records that the host wrote `length` bytes at `offset` of `buffer` (already written), and what
    /// they are: a checkpoint tensor by name, stored as `dtype` ("f16", "f32"), or nil when they must
    /// travel as bytes (small vectors, values computed on the host).
    public static func fill(_ buffer: any MTLBuffer, offset: Int, length: Int, tensor: String?, dtype: String?) {
        guard let r = recorder, let b = buffer as? CompatBuffer else { return }
        r.lock.lock()
        defer { r.lock.unlock() }
        r.fill(b, offset: offset, length: length, tensor: tensor, dtype: dtype)
    }

    static let recorder: TraceRecorder? = {
        guard let path = ProcessInfo.processInfo.environment["METALCOMPAT_TRACE"], !path.isEmpty else { return nil }
        return TraceRecorder(path: path, dry: ProcessInfo.processInfo.environment["METALCOMPAT_TRACE_DRY"] == "1")
    }()

    /// Whether committed command buffers skip execution (METALCOMPAT_TRACE_DRY=1).
    static var dryRun: Bool { recorder?.dry ?? false }
}

final class TraceRecorder {
    let lock = NSLock()
    let dry: Bool
    private let out: FileHandle?
    private var heaps: [ObjectIdentifier: Int] = [:]
    private var heapObjects: [CompatHeap] = []
    private var buffers: [CompatBuffer] = []
    private var announced = 0
    private var pipelines: [ObjectIdentifier: Int] = [:]
    private var pipelineObjects: [CompatComputePipelineState] = []
    private var commandBuffers = 0
    /// Buffers at most this long are compared with a shadow copy before each commit (host writes).
    private let shadowLimit = 1 << 20
    private var shadows: [ObjectIdentifier: [UInt8]] = [:]
    /// CRC of larger buffers after the last command buffer, to catch host writes that cannot be replayed.
    private var sums: [ObjectIdentifier: UInt32] = [:]
    /// Buffers holding checkpoint tensors (weights: not expected to change after load, not checked).
    private var staticBuffers = Set<ObjectIdentifier>()
    private let inlineLimit: Int

    init(path: String, dry: Bool) {
        self.dry = dry
        inlineLimit = Int(ProcessInfo.processInfo.environment["METALCOMPAT_TRACE_INLINE"] ?? "") ?? (64 << 10)
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        out = FileHandle(forWritingAtPath: path)
        if out == nil { FileHandle.standardError.write("MetalCompat: cannot write the trace \(path)\n".data(using: .utf8)!) }
        emit(["ev": "trace", "version": 1, "dry": dry])
    }

    private func emit(_ object: [String: Any]) {
        guard let out else { return }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
            FileHandle.standardError.write("MetalCompat: cannot encode a trace event (\(object["ev"] ?? "?"))\n".data(using: .utf8)!)
            return
        }
        out.write(data)
        out.write(Data([10]))
    }

    func heapMade(_ heap: CompatHeap) {
        let id = heapObjects.count
        heaps[ObjectIdentifier(heap)] = id
        heapObjects.append(heap)
        emit(["ev": "heap", "id": id, "size": heap.size])
    }

    func bufferMade(_ buffer: CompatBuffer) { buffers.append(buffer) }

    /// Heap and byte offset of a buffer's first byte, when it lives in a traced heap.
    private func place(_ b: CompatBuffer) -> (heap: Int, offset: Int)? {
        guard let h = b.owningHeap, let id = heaps[ObjectIdentifier(h)] else { return nil }
        return (id, b.heapOffset)
    }

    /// Buffers made since the last announcement (their labels are set by now).
    private func announceBuffers() {
        while announced < buffers.count {
            let b = buffers[announced]
            announced += 1
            guard let (heap, offset) = place(b) else { continue }
            emit(["ev": "buffer", "heap": heap, "offset": offset, "length": b.length, "label": b.label ?? ""])
        }
    }

    func fill(_ b: CompatBuffer, offset: Int, length: Int, tensor: String?, dtype: String?) {
        guard let (heap, base) = place(b), offset >= 0, length > 0, offset + length <= b.length else {
            emit(["ev": "unsupported", "what": "fill of a buffer outside a traced heap, or out of its bounds"])
            return
        }
        let bytes = UnsafeRawBufferPointer(start: b.storage.base + offset, count: length)
        var e: [String: Any] = ["ev": "fill", "heap": heap, "offset": base + offset, "length": length,
                                "crc32": Int(crc32(bytes))]
        if !bytes.contains(where: { $0 != 0 }) {
            e["zero"] = true
        } else if let tensor, let dtype, length > inlineLimit {
            e["tensor"] = tensor
            e["dtype"] = dtype
            staticBuffers.insert(ObjectIdentifier(b)) // weights: never expected to change after load
        } else {
            e["bytes"] = Data(bytes).base64EncodedString()
        }
        emit(e)
    }

    private func pipelineID(_ p: CompatComputePipelineState) -> Int {
        if let id = pipelines[ObjectIdentifier(p)] { return id }
        let id = pipelineObjects.count
        pipelines[ObjectIdentifier(p)] = id
        pipelineObjects.append(p)
        let f = p.function, file = f.library.file.pointee
        var constants: [[String: Any]] = []
        for i in 0..<Int(file.n_constants) {
            let c = file.constants[i]
            var entry: [String: Any] = ["name": String(cString: c.name), "index": Int(c.index), "type": Int(c.data_type)]
            if i < f.constantStorage.count, let v = f.constantStorage[i] {
                switch MTLDataType(rawValue: UInt(c.data_type)) {
                case .int: entry["value"] = Int(v.load(as: Int32.self))
                case .uint: entry["value"] = Int(v.load(as: UInt32.self))
                case .bool: entry["value"] = v.load(as: UInt8.self) != 0
                case .float:
                    // JSON has no infinities (dt_max may be one): the bits always, the value when finite.
                    let x = v.load(as: Float.self)
                    entry["bits"] = Int(x.bitPattern)
                    if x.isFinite { entry["value"] = Double(x) }
                default: entry["bytes"] = Data(bytes: v, count: Int(c.size)).base64EncodedString()
                }
            }
            constants.append(entry)
        }
        emit(["ev": "pipeline", "id": id, "file": f.library.fileName, "function": f.name, "constants": constants,
              "maxThreads": p.maxTotalThreadsPerThreadgroup, "mathMode": "\(f.library.mathMode)"])
        return id
    }

    /// Called by commit() before the commands run: host writes, then the command buffer's contents.
    func commit(_ commands: [EncodedCommand], label: String?) {
        announceBuffers()
        hostWrites()
        emit(["ev": "commit", "cb": commandBuffers, "label": label ?? ""])
        commandBuffers += 1
        for command in commands {
            switch command {
            case .dispatch(let d): dispatch(d, indirect: false)
            case .barrier: emit(["ev": "barrier"])
            case .encoder(let type): emit(["ev": "encoder", "type": type == .concurrent ? "concurrent" : "serial"])
            case .indirect(let icb, let range, let pipeline, let arguments, _, _):
                for i in range {
                    guard let c = icb.command(at: i), let (grid, group, nonuniform) = c.dispatch else { continue }
                    if c.barrier { emit(["ev": "barrier"]) }
                    guard let p = icb.config.inheritPipelineState ? pipeline : c.pipeline else { continue }
                    var args = c.arguments
                    if icb.config.inheritBuffers { args.buffers = arguments.buffers }
                    dispatch(DispatchCommand(pipeline: p, arguments: args, grid: grid, threadsPerThreadgroup: group,
                                             nonuniform: nonuniform, origin: "icb"), indirect: true)
                }
            case .blit: emit(["ev": "unsupported", "what": "blit command"])
            case .failure: break
            }
        }
        emit(["ev": "end"])
    }

    private func dispatch(_ d: DispatchCommand, indirect: Bool) {
        var bound: [[Any]] = [], bytes: [[Any]] = []
        for (index, b) in d.arguments.buffers.enumerated() {
            guard let b else { continue }
            if let buffer = b.buffer {
                guard let (heap, offset) = place(buffer) else {
                    emit(["ev": "unsupported", "what": "a buffer outside a heap bound at index \(index)"])
                    continue
                }
                bound.append([index, heap, offset + b.offset])
            } else {
                let data = Data(bytes: b.storage.base + b.offset, count: b.storage.length - b.offset)
                bytes.append([index, data.base64EncodedString()])
            }
        }
        var tg: [[Int]] = []
        for (index, n) in d.arguments.threadgroupLengths.enumerated() where n > 0 { tg.append([index, n]) }
        let g = d.grid, t = d.threadsPerThreadgroup
        emit(["ev": "dispatch", "p": pipelineID(d.pipeline), "grid": [g.width, g.height, g.depth],
              "tg": [t.width, t.height, t.depth], "threads": d.nonuniform, "buffers": bound, "bytes": bytes,
              "tgmem": tg, "icb": indirect])
    }

    /// Host writes since the last command buffer ran: small buffers by comparison with their shadow,
    /// larger ones by CRC (a change there cannot be replayed and is reported).
    private func hostWrites() {
        for b in buffers where place(b) != nil {
            let key = ObjectIdentifier(b)
            let now = UnsafeRawBufferPointer(start: b.storage.base, count: b.length)
            if b.length <= shadowLimit {
                guard let old = shadows[key] else {
                    // First seen: its whole content (the device's memory starts undefined).
                    let (heap, offset) = place(b)!
                    if now.contains(where: { $0 != 0 }) {
                        emit(["ev": "write", "heap": heap, "offset": offset, "bytes": Data(now).base64EncodedString()])
                    } else {
                        emit(["ev": "write", "heap": heap, "offset": offset, "zero": b.length])
                    }
                    continue
                }
                var i = 0
                while i < b.length {
                    guard now[i] != old[i] else {
                        i += 1
                        continue
                    }
                    // One write per run of changed bytes, runs less than 16 bytes apart merged.
                    var last = i, j = i
                    while j < b.length && j - last < 16 {
                        if now[j] != old[j] { last = j }
                        j += 1
                    }
                    let (heap, offset) = place(b)!
                    emit(["ev": "write", "heap": heap, "offset": offset + i,
                          "bytes": Data(UnsafeRawBufferPointer(rebasing: now[i...last])).base64EncodedString()])
                    i = last + 1
                }
            } else if !staticBuffers.contains(key), let before = sums[key], before != crc32(now) {
                emit(["ev": "unsupported", "what": "host write into the \(b.length)-byte buffer '\(b.label ?? "")' "
                          + "between command buffers (only buffers up to \(shadowLimit) bytes are compared)"])
            }
        }
        snapshot()
    }

    /// Shadows and CRCs of what the heaps hold now (after a command buffer ran, or before the first).
    func snapshot() {
        for b in buffers where place(b) != nil {
            let key = ObjectIdentifier(b)
            let now = UnsafeRawBufferPointer(start: b.storage.base, count: b.length)
            if b.length <= shadowLimit {
                shadows[key] = [UInt8](now)
            } else if !staticBuffers.contains(key) {
                sums[key] = crc32(now)
            }
        }
    }
}

/// CRC-32 (IEEE 802.3, as zlib's crc32), which the replay recomputes over the bytes it rebuilds.
func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var c: UInt32 = 0xffff_ffff
    crcTable.withUnsafeBufferPointer { t in
        for x in bytes { c = t[Int((c ^ UInt32(x)) & 0xff)] ^ (c >> 8) }
    }
    return c ^ 0xffff_ffff
}

private let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
    var c = UInt32(n)
    for _ in 0..<8 { c = c & 1 != 0 ? 0xedb8_8320 ^ (c >> 1) : c >> 1 }
    return c
}

#endif
