// Loading pytorch_model.bin (torch.save of a state_dict) without Python.
//
// The file is a zip archive (TorchZip.swift) whose `<archive>/data.pkl` describes the dict of tensors
// (TorchPickle.swift) and whose `<archive>/data/<key>` entries hold the raw storage bytes. Tensor
// views point straight into the memory mapping, like safetensors views do.

/// Reads a torch.save() state_dict (zip format) without executing pickle code.
///
/// Returns the tensors in state_dict order. Tensors that share a storage (tied weights, views) become
/// views of the same bytes. A dict holding exactly one nested dict ({"state_dict": ...},
/// {"model": ...}) is unwrapped.
func readTorchCheckpoint(path: String) throws -> [TensorView] {
    try readTorchCheckpoint(file: MappedFile(path: path))
}

func readTorchCheckpoint(file: MappedFile) throws -> [TensorView] {
    let path = file.path
    try checkIsZip(file)
    let zip = try ZipDirectory(file: file)
    let prefix = try archivePrefix(zip)

    if let entry = zip[prefix + "byteorder"] {
        let raw = try zip.verifiedContents(of: entry)
        let order = String(decoding: raw, as: UTF8.self).trimmingWhitespace
        guard order == "little" else {
            throw MambaFailure.unsupported("\(path): tensors are stored with byteorder '\(order)'; only little-endian "
                                               + "checkpoints are supported")
        }
    }
    guard let pklEntry = zip[prefix + "data.pkl"] else {
        throw MambaFailure.internalError("\(path): data.pkl vanished from the zip directory")
    }
    let pickled = try unpickle(try zip.verifiedContents(of: pklEntry), source: "\(path): \(prefix)data.pkl")

    var storageBytes: [Int: UnsafeRawBufferPointer] = [:]
    var views: [TensorView] = []
    for (key, value) in try stateDictEntries(pickled, path: path) {
        guard case let .string(name) = key else {
            throw MambaFailure.unsupported("\(path): state_dict has a \(key.typeName) key; tensor names must be strings")
        }
        guard case let .tensor(t) = value else {
            throw MambaFailure.unsupported("\(path): '\(name)' holds a \(value.typeName), not a tensor; expected a "
                                               + "plain state_dict of tensors (or a dict holding just one)")
        }
        let tensor = pickled.tensors[t]
        let storage = pickled.storages[tensor.storage]
        let bytes: UnsafeRawBufferPointer
        if let b = storageBytes[tensor.storage] {
            bytes = b
        } else {
            let entryName = prefix + "data/" + storage.key
            guard let entry = zip[entryName] else {
                throw MambaFailure.format("\(path): tensor '\(name)' refers to storage '\(storage.key)', but the "
                                              + "archive has no entry '\(entryName)'")
            }
            bytes = try zip.contents(of: entry)
            storageBytes[tensor.storage] = bytes
        }
        views.append(try makeView(name: name, tensor, storage, bytes, file: file))
    }
    return views
}

/// Tells legacy torch files and other non-zip files apart from a truncated zip, for a useful message.
private func checkIsZip(_ file: MappedFile) throws {
    guard let head = file.bytes(0, min(file.size, 512)) else { return }
    if head.count >= 4, head[0] == 0x50, head[1] == 0x4B, head[2] == 0x03, head[3] == 0x04 { return }
    let isPickle = head[0] == 0x80
    let isTar = head.count >= 262 && Array(head[257 ..< 262]) == Array("ustar".utf8)
    if isPickle || isTar {
        throw MambaFailure.unsupported(
            "\(file.path): legacy torch format; re-save with torch.save(..., _use_new_zipfile_serialization=True) "
                + "or convert to safetensors")
    }
    throw MambaFailure.format("\(file.path): not a torch checkpoint (neither a zip archive nor a legacy torch file)")
}

/// The archive's top folder: torch names it after the file (or "archive"), so it is found, not assumed.
private func archivePrefix(_ zip: ZipDirectory) throws -> String {
    let candidates = zip.entries.map(\.name).filter {
        $0.hasSuffix("/data.pkl") && $0.utf8.filter { $0 == UInt8(ascii: "/") }.count == 1
    }
    guard candidates.count == 1, let pkl = candidates.first else {
        let found = candidates.isEmpty ? "no <archive>/data.pkl entry" : "several data.pkl entries \(candidates)"
        throw MambaFailure.format("\(zip.file.path): zip archive has \(found); not a torch.save checkpoint")
    }
    return String(pkl.dropLast("data.pkl".count))
}

/// The (name, tensor) pairs of the state_dict, unwrapping a single nested dict.
private func stateDictEntries(_ u: Unpickled, path: String) throws -> [(key: PickleValue, value: PickleValue)] {
    guard case let .dict(d) = u.root else {
        throw MambaFailure.unsupported("\(path): checkpoint holds a \(u.root.typeName), not a state_dict")
    }
    let entries = u.dicts[d].entries
    if entries.count == 1, case let .dict(inner) = entries[0].value {
        return u.dicts[inner].entries
    }
    return entries
}

private func makeView(name: String, _ t: PickledTensor, _ s: PickledStorage, _ bytes: UnsafeRawBufferPointer,
                      file: MappedFile) throws -> TensorView {
    let path = file.path
    guard let dtype = s.dtype else {
        throw MambaFailure.unsupported("\(path): tensor '\(name)' has dtype \(torchDTypeName(s.typeName)) "
                                           + "(torch.\(s.typeName)); only float32, float16 and bfloat16 are supported")
    }
    if !t.flags.isEmpty {
        throw MambaFailure.unsupported("\(path): tensor '\(name)' is saved as a lazy view (\(t.flags.joined(separator: ", "))); "
                                           + "save tensor.resolve_neg().resolve_conj() instead")
    }
    var count = 1
    for n in t.shape {
        let (c, overflow) = count.multipliedReportingOverflow(by: n)
        guard !overflow else { throw MambaFailure.format("\(path): tensor '\(name)' size \(t.shape) overflows") }
        count = c
    }
    // Row-major strides; a dimension of size 1 (or an empty tensor) allows any stride without
    // changing the layout.
    var expected = 1
    for i in stride(from: t.shape.count - 1, through: 0, by: -1) where count > 0 {
        if t.shape[i] != 1 && t.stride[i] != expected {
            throw MambaFailure.unsupported("\(path): tensor '\(name)' is not contiguous (size \(t.shape), stride "
                                               + "\(t.stride)); save tensor.contiguous() instead")
        }
        expected *= t.shape[i]
    }
    // Elements [offset, offset + count) must lie in both the declared storage and its zip entry.
    let (end, o1) = t.offset.addingReportingOverflow(count)
    let (endBytes, o2) = end.multipliedReportingOverflow(by: dtype.byteSize)
    guard !o1, !o2, end <= s.elementCount, endBytes <= bytes.count, let base = bytes.baseAddress else {
        throw MambaFailure.format(
            "\(path): tensor '\(name)' (size \(t.shape), storage offset \(t.offset)) does not fit in storage "
                + "'\(s.key)', which holds \(s.elementCount) elements in \(bytes.count) bytes")
    }
    return TensorView(name: name, dtype: dtype, shape: t.shape, data: base + t.offset * dtype.byteSize, file: file)
}

private func torchDTypeName(_ storageType: String) -> String {
    switch storageType {
    case "DoubleStorage": return "float64"
    case "LongStorage": return "int64"
    case "IntStorage": return "int32"
    case "ShortStorage": return "int16"
    case "CharStorage": return "int8"
    case "ByteStorage", "UntypedStorage": return "uint8"
    case "BoolStorage": return "bool"
    case "ComplexFloatStorage": return "complex64"
    case "ComplexDoubleStorage": return "complex128"
    default: return storageType.hasSuffix("Storage") ? String(storageType.dropLast("Storage".count)) : storageType
    }
}

private extension String {
    var trimmingWhitespace: String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" }
        return String(drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}
