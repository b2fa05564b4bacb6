// A small JSON reader for config.json, safetensors headers and options. Written here rather than
// taken from Foundation so the library needs no Foundation on Linux and errors can say exactly
// where a file is malformed.

enum JSON: Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    /// An object whose keys are one of the ABI's key enums (ABI.swift), so every key is one mamba.h documents.
    static func object<Key: RawRepresentable>(_ fields: [Key: JSON]) -> JSON where Key.RawValue == String {
        .object(Dictionary(uniqueKeysWithValues: fields.map { ($0.key.rawValue, $0.value) }))
    }

    subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    var double: Double? {
        if case .number(let d) = self { return d }
        return nil
    }

    /// An integer value; nil for fractions and values outside Int's range.
    var int: Int? {
        guard case .number(let d) = self, d.rounded() == d, abs(d) < 9.0e15 else { return nil }
        return Int(d)
    }

    var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    var bool: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    var array: [JSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    var object: [String: JSON]? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// Parses UTF-8 bytes; `context` names the file in error messages.
    static func parse(_ bytes: UnsafeRawBufferPointer, context: String) throws -> JSON {
        var p = JSONParser(bytes: bytes, context: context)
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        if p.i != bytes.count { throw p.fail("unexpected data after the JSON value") }
        return v
    }

    static func parse(_ text: String, context: String) throws -> JSON {
        var copy = text
        return try copy.withUTF8 { try parse(UnsafeRawBufferPointer($0), context: context) }
    }
}

private struct JSONParser {
    let bytes: UnsafeRawBufferPointer
    let context: String
    var i = 0

    init(bytes: UnsafeRawBufferPointer, context: String) {
        self.bytes = bytes
        self.context = context
    }

    func fail(_ what: String) -> MambaFailure {
        MambaFailure.format("\(context): malformed JSON at byte \(i): \(what)")
    }

    var peek: UInt8? { i < bytes.count ? bytes[i] : nil }

    mutating func skipSpace() {
        while let c = peek, c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { i += 1 }
    }

    mutating func expect(_ literal: String, _ v: JSON) throws -> JSON {
        for c in literal.utf8 {
            guard peek == c else { throw fail("expected '\(literal)'") }
            i += 1
        }
        return v
    }

    mutating func value(depth: Int) throws -> JSON {
        guard depth < 64 else { throw fail("nested too deeply") }
        guard let c = peek else { throw fail("unexpected end of input") }
        switch c {
        case UInt8(ascii: "{"): return try object(depth: depth)
        case UInt8(ascii: "["): return try array(depth: depth)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        // Python's json module writes these for non-finite floats.
        case UInt8(ascii: "N"): return try expect("NaN", .number(.nan))
        case UInt8(ascii: "I"): return try expect("Infinity", .number(.infinity))
        default: return try number()
        }
    }

    mutating func object(depth: Int) throws -> JSON {
        i += 1
        var o: [String: JSON] = [:]
        skipSpace()
        if peek == UInt8(ascii: "}") {
            i += 1
            return .object(o)
        }
        while true {
            skipSpace()
            guard peek == UInt8(ascii: "\"") else { throw fail("expected a key string") }
            let k = try string()
            skipSpace()
            guard peek == UInt8(ascii: ":") else { throw fail("expected ':'") }
            i += 1
            skipSpace()
            if o[k] != nil { throw fail("duplicate key \"\(k)\"") }
            o[k] = try value(depth: depth + 1)
            skipSpace()
            if peek == UInt8(ascii: ",") {
                i += 1
            } else if peek == UInt8(ascii: "}") {
                i += 1
                return .object(o)
            } else {
                throw fail("expected ',' or '}'")
            }
        }
    }

    mutating func array(depth: Int) throws -> JSON {
        i += 1
        var a: [JSON] = []
        skipSpace()
        if peek == UInt8(ascii: "]") {
            i += 1
            return .array(a)
        }
        while true {
            skipSpace()
            a.append(try value(depth: depth + 1))
            skipSpace()
            if peek == UInt8(ascii: ",") {
                i += 1
            } else if peek == UInt8(ascii: "]") {
                i += 1
                return .array(a)
            } else {
                throw fail("expected ',' or ']'")
            }
        }
    }

    mutating func hex4() throws -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            guard let c = peek else { throw fail("truncated \\u escape") }
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw fail("bad \\u escape")
            }
            v = v * 16 + d
            i += 1
        }
        return v
    }

    mutating func string() throws -> String {
        i += 1
        var out: [UInt8] = []
        while true {
            guard let c = peek else { throw fail("unterminated string") }
            i += 1
            if c == UInt8(ascii: "\"") { break }
            if c != UInt8(ascii: "\\") {
                out.append(c)
                continue
            }
            guard let e = peek else { throw fail("unterminated escape") }
            i += 1
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "b"): out.append(0x08)
            case UInt8(ascii: "f"): out.append(0x0C)
            case UInt8(ascii: "u"):
                var scalar = try hex4()
                if (0xD800..<0xDC00).contains(scalar), peek == UInt8(ascii: "\\"), i + 1 < bytes.count,
                   bytes[i + 1] == UInt8(ascii: "u")
                {
                    i += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw fail("bad surrogate pair") }
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                }
                out.append(contentsOf: Array(String(Unicode.Scalar(scalar).map { Character($0) } ?? "\u{FFFD}").utf8))
            default: out.append(e)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    mutating func number() throws -> JSON {
        let start = i
        if peek == UInt8(ascii: "-") { i += 1 }
        if peek == UInt8(ascii: "I") { return try expect("Infinity", .number(-.infinity)) }
        while let c = peek, (0x30...0x39).contains(c) || c == UInt8(ascii: ".") || c == UInt8(ascii: "e") ||
            c == UInt8(ascii: "E") || c == UInt8(ascii: "+") || c == UInt8(ascii: "-")
        {
            i += 1
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<i]), as: UTF8.self)
        guard !text.isEmpty, let d = Double(text) else { i = start; throw fail("invalid value") }
        return .number(d)
    }
}

extension JSON {
    /// Serialises to compact JSON text (non-finite numbers as null).
    var text: String {
        switch self {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let d):
            if !d.isFinite { return "null" }
            if d.rounded() == d && abs(d) < 1e15 { return String(Int(d)) }
            return "\(d)"
        case .string(let s): return JSON.quote(s)
        case .array(let a): return "[" + a.map(\.text).joined(separator: ",") + "]"
        case .object(let o):
            return "{" + o.keys.sorted().map { JSON.quote($0) + ":" + o[$0]!.text }.joined(separator: ",") + "}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 {
                    let h = String(u.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - h.count) + h
                } else {
                    out.unicodeScalars.append(u)
                }
            }
        }
        return out + "\""
    }
}
