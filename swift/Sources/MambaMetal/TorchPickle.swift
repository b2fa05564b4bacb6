// A pickle reader for the data.pkl of torch.save() state_dicts.
//
// This is not a Python unpickler: it never calls anything. It understands the opcodes that
// protocol 2-5 pickles of a dict of tensors use, and GLOBAL names only from a fixed list of torch and
// collections functions whose effect it reproduces itself (building a dict, describing a tensor).
// Any other name is refused, so a malicious checkpoint cannot run code, only fail to load.
//
// Containers live in arenas owned by the reader and values refer to them by index. That gives
// Python's sharing semantics (the memo and the stack see the same dict), and it keeps `PickleValue`
// flat, so hostile nesting cannot overflow the stack when values are freed.

/// A value on the pickle stack.
enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    case tuple(Int)
    case list(Int)
    case dict(Int)
    case global(TorchGlobal)
    case storage(Int)
    case tensor(Int)

    var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case let .global(g): return g.qualifiedName
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }
}

/// The only Python names a checkpoint may reference.
enum TorchGlobal {
    case orderedDict
    case rebuildTensor
    case rebuildTensorV2
    case rebuildParameter
    /// A typed storage class such as torch.FloatStorage; `dtype` is nil for types the engine cannot use.
    case storageType(name: String, dtype: DType?)

    init?(module: String, name: String) {
        switch (module, name) {
        case ("collections", "OrderedDict"): self = .orderedDict
        case ("torch._utils", "_rebuild_tensor"): self = .rebuildTensor
        case ("torch._utils", "_rebuild_tensor_v2"): self = .rebuildTensorV2
        case ("torch._utils", "_rebuild_parameter"): self = .rebuildParameter
        case ("torch", "FloatStorage"): self = .storageType(name: name, dtype: .f32)
        case ("torch", "HalfStorage"): self = .storageType(name: name, dtype: .f16)
        case ("torch", "BFloat16Storage"): self = .storageType(name: name, dtype: .bf16)
        // Storage classes are inert type tags here, so the other dtypes are let through to produce a
        // "dtype not supported" error that names the tensor instead of a vague pickle error.
        case ("torch", let n) where n.hasSuffix("Storage") && n.utf8.count <= 40
            && n.utf8.allSatisfy({ $0 == 0x5F || (0x30 ... 0x39).contains($0) || (0x41 ... 0x5A).contains($0)
                || (0x61 ... 0x7A).contains($0) }):
            self = .storageType(name: n, dtype: nil)
        case ("torch.storage", "UntypedStorage"): self = .storageType(name: "UntypedStorage", dtype: nil)
        default: return nil
        }
    }

    var qualifiedName: String {
        switch self {
        case .orderedDict: return "collections.OrderedDict"
        case .rebuildTensor: return "torch._utils._rebuild_tensor"
        case .rebuildTensorV2: return "torch._utils._rebuild_tensor_v2"
        case .rebuildParameter: return "torch._utils._rebuild_parameter"
        case let .storageType(name, _): return "torch.\(name)"
        }
    }
}

/// A storage named by a persistent id: the bytes live in zip entry `<archive>/data/<key>`.
struct PickledStorage {
    let key: String
    let typeName: String
    let dtype: DType?
    let elementCount: Int
}

/// What `_rebuild_tensor_v2` would have built, before any checking against the storage.
struct PickledTensor {
    let storage: Int
    let offset: Int
    let shape: [Int]
    let stride: [Int]
    /// Metadata flags that change the meaning of the bytes (e.g. "neg" for a lazily negated view).
    let flags: [String]
}

/// Hashable stand-in for the dict keys that matter (Python's True == 1, so bools fold into ints).
private enum DictKey: Hashable {
    case int(Int), string(String)
}

struct PickleDict {
    private(set) var entries: [(key: PickleValue, value: PickleValue)] = []
    private var index: [DictKey: Int] = [:]

    mutating func set(_ key: PickleValue, _ value: PickleValue) {
        let k: DictKey?
        switch key {
        case let .string(s): k = .string(s)
        case let .int(i): k = .int(i)
        case let .bool(b): k = .int(b ? 1 : 0)
        default: k = nil
        }
        if let k, let i = index[k] {
            entries[i].value = value
            return
        }
        if let k { index[k] = entries.count }
        entries.append((key, value))
    }
}

/// The result of reading a pickle: the root value and the arenas its indices point into.
struct Unpickled {
    var root: PickleValue = .none
    var tuples: [[PickleValue]] = []
    var lists: [[PickleValue]] = []
    var dicts: [PickleDict] = []
    var storages: [PickledStorage] = []
    var tensors: [PickledTensor] = []
}

/// Reads a torch state_dict pickle. `source` names the file and entry in error messages.
func unpickle(_ bytes: UnsafeRawBufferPointer, source: String) throws -> Unpickled {
    var machine = PickleMachine(bytes: bytes, source: source)
    return try machine.run()
}

/// The pickle opcodes a torch state_dict uses; anything else is refused.
private enum Op: UInt8 {
    case proto = 0x80
    case frame = 0x95
    case stop = 0x2E
    case mark = 0x28
    case emptyDict = 0x7D
    case emptyTuple = 0x29
    case emptyList = 0x5D
    case noneObject = 0x4E
    case newTrue = 0x88
    case newFalse = 0x89
    case binInt1 = 0x4B
    case binInt2 = 0x4D
    case binInt = 0x4A
    case long1 = 0x8A
    case binFloat = 0x47
    case binUnicode = 0x58
    case shortBinUnicode = 0x8C
    case binUnicode8 = 0x8D
    case tuple = 0x74
    case tuple1 = 0x85
    case tuple2 = 0x86
    case tuple3 = 0x87
    case binPut = 0x71
    case longBinPut = 0x72
    case memoize = 0x94
    case binGet = 0x68
    case longBinGet = 0x6A
    case global = 0x63
    case stackGlobal = 0x93
    case binPersId = 0x51
    case reduce = 0x52
    case setItem = 0x73
    case setItems = 0x75
    case append = 0x61
    case appends = 0x65
    case build = 0x62
}

private struct PickleMachine {
    // Far beyond any state_dict (about 10 stack slots per tensor), small enough to fail fast.
    static let maxStack = 1 << 22
    static let maxMarks = 1 << 12
    static let maxRank = 32

    let bytes: UnsafeRawBufferPointer
    let source: String
    var pos = 0
    var opStart = 0
    var stack: [PickleValue] = []
    var marks: [Int] = []
    var memo: [Int: PickleValue] = [:]
    var out = Unpickled()
    var storageByKey: [String: Int] = [:]

    init(bytes: UnsafeRawBufferPointer, source: String) {
        self.bytes = bytes
        self.source = source
    }

    func fail(_ what: String) -> MambaFailure {
        MambaFailure.format("\(source): \(what) (pickle byte \(opStart))")
    }

    // MARK: reading

    mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, n <= bytes.count - pos else { throw fail("truncated pickle") }
        defer { pos += n }
        return UnsafeRawBufferPointer(rebasing: bytes[pos ..< pos + n])
    }

    mutating func u8() throws -> UInt8 { try take(1)[0] }
    mutating func uint<T: FixedWidthInteger>(_: T.Type) throws -> T {
        T(littleEndian: try take(MemoryLayout<T>.size).loadUnaligned(as: T.self))
    }

    mutating func length<T: FixedWidthInteger>(_: T.Type) throws -> Int {
        guard let n = Int(exactly: try uint(T.self)) else { throw fail("length out of range") }
        return n
    }

    mutating func utf8(_ n: Int) throws -> String {
        let raw = try take(n)
        var it = raw.makeIterator()
        var codec = UTF8()
        decoding: while true {
            switch codec.decode(&it) {
            case .scalarValue: continue
            case .emptyInput: break decoding
            case .error: throw fail("invalid UTF-8 in a string")
            }
        }
        return String(decoding: raw, as: UTF8.self)
    }

    /// A newline-terminated ASCII name, as the GLOBAL opcode stores module and attribute.
    mutating func line() throws -> String {
        var chars: [UInt8] = []
        while true {
            let c = try u8()
            if c == 0x0A { break }
            guard chars.count < 256, c >= 0x20, c < 0x7F else { throw fail("malformed GLOBAL name") }
            chars.append(c)
        }
        return String(decoding: chars, as: UTF8.self)
    }

    // MARK: stack

    mutating func push(_ v: PickleValue) throws {
        guard stack.count < PickleMachine.maxStack else { throw fail("pickle stack too deep") }
        stack.append(v)
    }

    mutating func pop() throws -> PickleValue {
        guard stack.count > (marks.last ?? 0), let v = stack.popLast() else { throw fail("pickle stack underflow") }
        return v
    }

    mutating func popToMark() throws -> [PickleValue] {
        guard let m = marks.popLast() else { throw fail("pickle opcode needs a MARK but none is set") }
        let items = Array(stack[m...])
        stack.removeSubrange(m...)
        return items
    }

    mutating func newTuple(_ items: [PickleValue]) -> PickleValue {
        out.tuples.append(items)
        return .tuple(out.tuples.count - 1)
    }

    mutating func newDict() -> PickleValue {
        out.dicts.append(PickleDict())
        return .dict(out.dicts.count - 1)
    }

    func memoValue(_ i: Int) throws -> PickleValue {
        guard let v = memo[i] else { throw fail("pickle memo slot \(i) is read before it is written") }
        return v
    }

    // MARK: the loop

    mutating func run() throws -> Unpickled {
        while true {
            opStart = pos
            let byte = try u8()
            guard let op = Op(rawValue: byte) else {
                let printable = byte >= 0x20 && byte < 0x7F ? " '\(Character(Unicode.Scalar(byte)))'" : ""
                throw fail("unsupported pickle opcode 0x\(String(byte, radix: 16))\(printable)")
            }
            switch op {
            case .proto:
                let proto = try u8()
                guard proto >= 2 && proto <= 5 else { throw fail("unsupported pickle protocol \(proto)") }
            case .frame: // a length prefix for buffered reading; the bytes follow inline.
                let n = try length(UInt64.self)
                guard n <= bytes.count - pos else { throw fail("pickle frame runs past the end") }
            case .stop:
                out.root = try pop()
                return out
            case .mark:
                guard marks.count < PickleMachine.maxMarks else { throw fail("too many nested MARKs") }
                marks.append(stack.count)
            case .emptyDict: try push(newDict())
            case .emptyTuple: try push(newTuple([]))
            case .emptyList:
                out.lists.append([])
                try push(.list(out.lists.count - 1))
            case .noneObject: try push(.none)
            case .newTrue: try push(.bool(true))
            case .newFalse: try push(.bool(false))
            case .binInt1: try push(.int(Int(try u8())))
            case .binInt2: try push(.int(Int(try uint(UInt16.self))))
            case .binInt: try push(.int(Int(Int32(bitPattern: try uint(UInt32.self)))))
            case .long1: try push(.int(try long1()))
            case .binFloat: // big-endian IEEE double
                try push(.float(Double(bitPattern: UInt64(bigEndian: try take(8).loadUnaligned(as: UInt64.self)))))
            case .binUnicode: try push(.string(try utf8(try length(UInt32.self))))
            case .shortBinUnicode: try push(.string(try utf8(Int(try u8()))))
            case .binUnicode8: try push(.string(try utf8(try length(UInt64.self))))
            case .tuple: try push(newTuple(try popToMark()))
            case .tuple1: try push(newTuple([try pop()]))
            case .tuple2:
                let b = try pop(), a = try pop()
                try push(newTuple([a, b]))
            case .tuple3:
                let c = try pop(), b = try pop(), a = try pop()
                try push(newTuple([a, b, c]))
            case .binPut: memo[Int(try u8())] = try top()
            case .longBinPut: memo[try length(UInt32.self)] = try top()
            case .memoize: memo[memo.count] = try top()
            case .binGet: try push(try memoValue(Int(try u8())))
            case .longBinGet: try push(try memoValue(try length(UInt32.self)))
            case .global:
                let module = try line(), name = try line()
                try push(.global(try global(module, name)))
            case .stackGlobal:
                let n = try pop(), m = try pop()
                guard case let .string(module) = m, case let .string(name) = n else {
                    throw fail("STACK_GLOBAL needs two strings")
                }
                try push(.global(try global(module, name)))
            case .binPersId: try push(try persistentLoad(try pop()))
            case .reduce:
                let args = try pop(), callable = try pop()
                try push(try reduce(callable, args))
            case .setItem:
                let v = try pop(), k = try pop()
                try setItems(into: try top(), [k, v])
            case .setItems:
                let items = try popToMark()
                try setItems(into: try top(), items)
            case .append:
                let v = try pop()
                try append(to: try top(), [v])
            case .appends:
                let items = try popToMark()
                try append(to: try top(), items)
            case .build:
                // Only OrderedDict state_dicts get BUILD: their `_metadata` attribute (per-module
                // version numbers), which loading tensors does not need.
                _ = try pop()
                guard case .dict = try top() else { throw fail("BUILD applies state to a \(try top().typeName)") }
            }
        }
    }

    func top() throws -> PickleValue {
        guard stack.count > (marks.last ?? 0), let v = stack.last else { throw fail("pickle stack underflow") }
        return v
    }

    /// LONG1: a little-endian two's-complement integer of n bytes.
    mutating func long1() throws -> Int {
        let n = Int(try u8())
        let raw = try take(n)
        guard n <= 8 else { throw fail("integer wider than 64 bits") }
        guard n > 0 else { return 0 }
        var v: UInt64 = 0
        for i in (0 ..< n).reversed() { v = v << 8 | UInt64(raw[i]) }
        if n < 8 && raw[n - 1] & 0x80 != 0 { v |= ~0 << (8 * UInt64(n)) }
        return Int(Int64(bitPattern: v))
    }

    func global(_ module: String, _ name: String) throws -> TorchGlobal {
        guard let g = TorchGlobal(module: module, name: name) else {
            throw MambaFailure.unsupported(
                "\(source): pickle references \(module).\(name), which is not a plain tensor state_dict")
        }
        return g
    }

    mutating func setItems(into target: PickleValue, _ items: [PickleValue]) throws {
        guard case let .dict(d) = target else { throw fail("SETITEM(S) on a \(target.typeName)") }
        guard items.count % 2 == 0 else { throw fail("SETITEMS with an odd number of items") }
        for i in stride(from: 0, to: items.count, by: 2) { out.dicts[d].set(items[i], items[i + 1]) }
    }

    mutating func append(to target: PickleValue, _ items: [PickleValue]) throws {
        guard case let .list(l) = target else { throw fail("APPEND(S) on a \(target.typeName)") }
        out.lists[l].append(contentsOf: items)
    }

    /// BINPERSID: torch's persistent id ('storage', storage_type, key, location, numel).
    mutating func persistentLoad(_ pid: PickleValue) throws -> PickleValue {
        guard case let .tuple(t) = pid, out.tuples[t].count == 5, case .string("storage") = out.tuples[t][0],
              case let .global(.storageType(typeName, dtype)) = out.tuples[t][1],
              case let .string(key) = out.tuples[t][2], case .string = out.tuples[t][3],
              case let .int(numel) = out.tuples[t][4], numel >= 0 else {
            throw fail("persistent id is not a torch storage reference")
        }
        if let i = storageByKey[key] {
            guard out.storages[i].typeName == typeName else {
                throw fail("storage '\(key)' is referenced as both \(out.storages[i].typeName) and \(typeName)")
            }
            return .storage(i)
        }
        storageByKey[key] = out.storages.count
        out.storages.append(PickledStorage(key: key, typeName: typeName, dtype: dtype, elementCount: numel))
        return .storage(out.storages.count - 1)
    }

    mutating func reduce(_ callable: PickleValue, _ argValue: PickleValue) throws -> PickleValue {
        guard case let .tuple(t) = argValue else { throw fail("REDUCE arguments are a \(argValue.typeName)") }
        let args = out.tuples[t]
        guard case let .global(g) = callable else { throw fail("REDUCE calls a \(callable.typeName)") }
        switch g {
        case .orderedDict:
            guard args.isEmpty else { throw fail("OrderedDict built from arguments") }
            return newDict()
        case .rebuildTensor, .rebuildTensorV2:
            // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, metadata]])
            let isV2: Bool
            if case .rebuildTensorV2 = g { isV2 = true } else { isV2 = false }
            let expected = isV2 ? 6 ... 7 : 4 ... 4
            guard expected.contains(args.count) else {
                throw fail("\(g.qualifiedName) called with \(args.count) arguments")
            }
            guard case let .storage(s) = args[0], case let .int(offset) = args[1], offset >= 0 else {
                throw fail("\(g.qualifiedName) needs a storage and a non-negative offset")
            }
            let shape = try intTuple(args[2], "size"), stride = try intTuple(args[3], "stride")
            guard shape.count == stride.count, shape.allSatisfy({ $0 >= 0 }) else {
                throw fail("tensor size \(shape) and stride \(stride) do not match")
            }
            var flags: [String] = []
            if args.count == 7 { flags = try metadataFlags(args[6]) }
            out.tensors.append(PickledTensor(storage: s, offset: offset, shape: shape, stride: stride, flags: flags))
            return .tensor(out.tensors.count - 1)
        case .rebuildParameter:
            // (data, requires_grad, backward_hooks): a Parameter is its data for inference.
            guard args.count == 3, case .tensor = args[0] else { throw fail("malformed _rebuild_parameter call") }
            return args[0]
        case .storageType:
            throw fail("\(g.qualifiedName) is called instead of being used as a storage tag")
        }
    }

    func intTuple(_ v: PickleValue, _ what: String) throws -> [Int] {
        guard case let .tuple(t) = v, out.tuples[t].count <= PickleMachine.maxRank else {
            throw fail("tensor \(what) is not a tuple of at most \(PickleMachine.maxRank) integers")
        }
        return try out.tuples[t].map {
            guard case let .int(i) = $0 else { throw fail("tensor \(what) holds a \($0.typeName)") }
            return i
        }
    }

    /// The keys of a tensor metadata dict whose values are set; e.g. {"neg": True} marks a lazily
    /// negated view whose stored bytes are not the tensor's values.
    func metadataFlags(_ v: PickleValue) throws -> [String] {
        if case .none = v { return [] }
        guard case let .dict(d) = v else { throw fail("tensor metadata is a \(v.typeName)") }
        return out.dicts[d].entries.compactMap { entry in
            if case .bool(false) = entry.value { return nil }
            if case .none = entry.value { return nil }
            if case let .string(k) = entry.key { return k }
            return entry.key.typeName
        }
    }
}
