// The zip container of torch.save() checkpoints, read in place from a memory mapping.
//
// torch writes every entry STORED (uncompressed) and pads local headers so that data starts on a
// 64-byte boundary, which is what lets tensors be used straight from the mapping. Only the central
// directory is trusted for sizes: torch sets the data-descriptor flag, so local headers may carry
// zeros there. CRCs are not checked for tensor data (that would read gigabytes at load time), only
// for the small entries the loader interprets.

/// One entry of a zip archive as described by its central directory record.
struct ZipEntry {
    let name: String
    let method: UInt16
    let flags: UInt16
    let crc32: UInt32
    let compressedSize: Int
    let size: Int
    let localHeaderOffset: Int
}

/// The central directory of a zip archive held in a `MappedFile`.
struct ZipDirectory {
    let file: MappedFile
    /// Entries by name, in directory order.
    let entries: [ZipEntry]
    private let indexByName: [String: Int]

    subscript(name: String) -> ZipEntry? { indexByName[name].map { entries[$0] } }

    init(file: MappedFile) throws {
        self.file = file
        let path = file.path
        guard let eocd = ZipDirectory.findEndRecord(file) else {
            throw MambaFailure.format(
                "\(path): no zip end-of-central-directory record; the file is truncated or not a zip archive")
        }
        let r = ByteReader(file: file)
        var cdEntries = Int(try r.u16(eocd + 10))
        var cdSize = Int(try r.u32(eocd + 12))
        var cdOffset = Int(try r.u32(eocd + 16))
        let disk = try r.u16(eocd + 4), cdDisk = try r.u16(eocd + 6)

        // A ZIP64 locator sits right before the classic record when any of its fields overflowed.
        let locator = eocd - 20
        if locator >= 0, try r.u32(locator) == 0x0706_4b50 {
            guard let eocd64 = Int(exactly: try r.u64(locator + 8)), try r.u32(eocd64) == 0x0606_4b50 else {
                throw MambaFailure.format("\(path): ZIP64 end-of-central-directory record is missing or damaged")
            }
            guard try r.u32(eocd64 + 16) == 0, try r.u32(eocd64 + 20) == 0 else {
                throw MambaFailure.unsupported("\(path): multi-disk zip archives are not supported")
            }
            guard let n = Int(exactly: try r.u64(eocd64 + 32)), let size = Int(exactly: try r.u64(eocd64 + 40)),
                  let offset = Int(exactly: try r.u64(eocd64 + 48)) else {
                throw MambaFailure.format("\(path): ZIP64 central directory fields are out of range")
            }
            (cdEntries, cdSize, cdOffset) = (n, size, offset)
        } else {
            guard disk == 0, cdDisk == 0 else {
                throw MambaFailure.unsupported("\(path): multi-disk zip archives are not supported")
            }
            if cdEntries == 0xFFFF || cdSize == 0xFFFF_FFFF || cdOffset == 0xFFFF_FFFF {
                throw MambaFailure.format("\(path): zip fields need ZIP64 but the archive has no ZIP64 record")
            }
        }
        guard file.bytes(cdOffset, cdSize) != nil else {
            throw MambaFailure.format("\(path): zip central directory lies outside the file (truncated?)")
        }
        // The smallest directory record is 46 bytes; a larger count is a lie we need not allocate for.
        guard cdEntries <= cdSize / 46 else {
            throw MambaFailure.format("\(path): zip central directory claims \(cdEntries) entries in \(cdSize) bytes")
        }

        var entries: [ZipEntry] = []
        var index: [String: Int] = [:]
        entries.reserveCapacity(cdEntries)
        var pos = cdOffset
        let cdEnd = cdOffset + cdSize
        for _ in 0 ..< cdEntries {
            let entry = try ZipDirectory.readCentralRecord(r, at: &pos, end: cdEnd)
            if index[entry.name] != nil {
                throw MambaFailure.format("\(path): zip entry '\(entry.name)' appears twice")
            }
            index[entry.name] = entries.count
            entries.append(entry)
        }
        self.entries = entries
        self.indexByName = index
    }

    /// The bytes of a stored entry, in place in the mapping.
    func contents(of entry: ZipEntry) throws -> UnsafeRawBufferPointer {
        let path = file.path
        if entry.flags & 1 != 0 {
            throw MambaFailure.unsupported("\(path): zip entry '\(entry.name)' is encrypted")
        }
        if entry.method != 0 {
            throw MambaFailure.unsupported(
                "\(path): zip entry '\(entry.name)' is compressed (method \(entry.method)); tensors can only be "
                    + "mapped from stored entries, as torch.save writes them (re-save the checkpoint with torch.save)")
        }
        guard entry.compressedSize == entry.size else {
            throw MambaFailure.format("\(path): stored zip entry '\(entry.name)' has different packed and unpacked sizes")
        }
        let r = ByteReader(file: file)
        let h = entry.localHeaderOffset
        guard try r.u32(h) == 0x0403_4b50 else {
            throw MambaFailure.format("\(path): zip entry '\(entry.name)' has no local header at offset \(h)")
        }
        let nameLength = Int(try r.u16(h + 26)), extraLength = Int(try r.u16(h + 28))
        let dataOffset = h + 30 + nameLength + extraLength
        guard let data = file.bytes(dataOffset, entry.size) else {
            throw MambaFailure.format(
                "\(path): zip entry '\(entry.name)' (\(entry.size) bytes at offset \(dataOffset)) runs past the end "
                    + "of the file (truncated?)")
        }
        return data
    }

    /// Like `contents(of:)`, and also checks the CRC: for small entries whose bytes steer the loader.
    func verifiedContents(of entry: ZipEntry) throws -> UnsafeRawBufferPointer {
        let data = try contents(of: entry)
        if crc32(data) != entry.crc32 {
            throw MambaFailure.format("\(file.path): zip entry '\(entry.name)' fails its CRC check (corrupt file)")
        }
        return data
    }

    private static func findEndRecord(_ file: MappedFile) -> Int? {
        // The record is 22 bytes plus a comment of at most 65535 bytes, so it starts in the last 64 KiB.
        guard file.size >= 22 else { return nil }
        let r = ByteReader(file: file)
        var pos = file.size - 22
        let lowest = max(0, pos - 0xFFFF)
        while pos >= lowest {
            if let sig = try? r.u32(pos), sig == 0x0605_4b50, let commentLength = try? r.u16(pos + 20),
               pos + 22 + Int(commentLength) <= file.size {
                return pos
            }
            pos -= 1
        }
        return nil
    }

    private static func readCentralRecord(_ r: ByteReader, at pos: inout Int, end: Int) throws -> ZipEntry {
        let path = r.file.path
        let start = pos
        guard end - start >= 46, try r.u32(start) == 0x0201_4b50 else {
            throw MambaFailure.format("\(path): damaged zip central directory at offset \(start)")
        }
        let flags = try r.u16(start + 8), method = try r.u16(start + 10)
        let crc = try r.u32(start + 16)
        var compressedSize = UInt64(try r.u32(start + 20)), size = UInt64(try r.u32(start + 24))
        let nameLength = Int(try r.u16(start + 28)), extraLength = Int(try r.u16(start + 30))
        let commentLength = Int(try r.u16(start + 32))
        let diskStart = try r.u16(start + 34)
        var localOffset = UInt64(try r.u32(start + 42))
        let recordLength = 46 + nameLength + extraLength + commentLength
        guard recordLength <= end - start, let nameBytes = r.file.bytes(start + 46, nameLength) else {
            throw MambaFailure.format("\(path): zip central directory record at offset \(start) overruns the directory")
        }
        let name = String(decoding: nameBytes, as: UTF8.self)

        // ZIP64 extra field (id 1): 64-bit values, present only for the 32-bit fields that are saturated,
        // in this fixed order.
        let needSize = size == 0xFFFF_FFFF, needCompressed = compressedSize == 0xFFFF_FFFF
        let needOffset = localOffset == 0xFFFF_FFFF
        if needSize || needCompressed || needOffset {
            var found = false
            var p = start + 46 + nameLength
            let extraEnd = p + extraLength
            while extraEnd - p >= 4 {
                let id = try r.u16(p), length = Int(try r.u16(p + 2))
                guard length <= extraEnd - p - 4 else { break }
                if id == 1 {
                    var q = p + 4
                    let fieldEnd = q + length
                    func next() throws -> UInt64 {
                        guard fieldEnd - q >= 8 else {
                            throw MambaFailure.format("\(path): zip entry '\(name)' has a short ZIP64 extra field")
                        }
                        defer { q += 8 }
                        return try r.u64(q)
                    }
                    if needSize { size = try next() }
                    if needCompressed { compressedSize = try next() }
                    if needOffset { localOffset = try next() }
                    found = true
                    break
                }
                p += 4 + length
            }
            guard found else {
                throw MambaFailure.format("\(path): zip entry '\(name)' needs a ZIP64 extra field but has none")
            }
        }
        guard diskStart == 0 || diskStart == 0xFFFF else {
            throw MambaFailure.unsupported("\(path): multi-disk zip archives are not supported")
        }
        guard let s = Int(exactly: size), let c = Int(exactly: compressedSize), let o = Int(exactly: localOffset)
        else {
            throw MambaFailure.format("\(path): zip entry '\(name)' has sizes or offsets out of range")
        }
        pos = start + recordLength
        return ZipEntry(name: name, method: method, flags: flags, crc32: crc, compressedSize: c, size: s,
                        localHeaderOffset: o)
    }
}

/// Little-endian loads from a mapped file; every read is bounds-checked and throws past the end.
struct ByteReader {
    let file: MappedFile

    private func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) throws -> T {
        guard let b = file.bytes(offset, MemoryLayout<T>.size) else {
            throw MambaFailure.format("\(file.path): unexpected end of file at offset \(offset) (truncated?)")
        }
        return T(littleEndian: b.loadUnaligned(as: T.self))
    }

    func u16(_ offset: Int) throws -> UInt16 { try load(offset, UInt16.self) }
    func u32(_ offset: Int) throws -> UInt32 { try load(offset, UInt32.self) }
    func u64(_ offset: Int) throws -> UInt64 { try load(offset, UInt64.self) }
}

private let crcTable: [UInt32] = (0 ..< 256).map { (n: UInt32) -> UInt32 in
    var c = n
    for _ in 0 ..< 8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
    return c
}

/// CRC-32 as zip uses it (reflected polynomial 0xEDB88320).
func crc32(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in bytes { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
}
