// The format is a contract: exact bytes of each structure at the offsets docs/FORMAT.md
// gives, and golden images of format version 1 that must stay readable.

import Testing
import SnapStore
import SnapStoreTestKit
#if canImport(Glibc)
import Glibc
#endif

@Suite struct FormatTests {
    @Test func crc32cKnownVector() {
        #expect(crc32c(Array("123456789".utf8)) == 0xE306_9283)
        #expect(crc32c([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
    }

    /// The fast paths (8 bytes at a time, three interleaved streams for large buffers) agree
    /// with the bit-at-a-time definition, continuing from any seed; and joining the CRCs of
    /// two pieces gives the CRC of both.
    @Test func crc32cMatchesDefinitionAndCombines() {
        func reference(_ bytes: ArraySlice<UInt8>, seed: UInt32) -> UInt32 {
            var c = ~seed
            for b in bytes {
                c ^= UInt32(b)
                for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            }
            return ~c
        }
        var rng = SeededGenerator(seed: 99)
        let data = (0..<(200 << 10)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for length in [0, 1, 7, 8, 4095, 12287, 12288, 12289, 16384, 65_541, 200 << 10] {
            for start in [0, 3] where start + length <= data.count {
                let piece = data[start..<(start + length)]
                let seed = UInt32(length &* 2_654_435_761 & 0xFFFF_FFFF)
                #expect(crc32c(Array(piece), seed: seed) == reference(piece, seed: seed), "length \(length) at \(start)")
            }
        }
        for split in [0, 1, 100, 4096, 16384, 100_003, 200 << 10] {
            let a = crc32c(Array(data[0..<split])), b = crc32c(Array(data[split...]))
            #expect(crc32cCombine(a, b, lengthB: UInt64(data.count - split)) == crc32c(data), "split at \(split)")
        }
    }

    @Test func superblockLayout() throws {
        var sb = Superblock(chunkSizeBytes: 16384, storeChunkCount: 1000, originSizeBytes: 1 << 30,
                            volumeUUID: Array(1...16), createdNanoseconds: 0x0102_0304_0506_0708,
                            originIdentity: DeviceIdentity(kind: .blockDevice, device: 0x0803, inode: 0),
                            originPath: "/dev/sdb1")
        sb.sequence = 7
        sb.epochLast = 42
        sb.freeChunkCount = 900
        sb.snapshotCount = 3
        sb.bitmapBlockCount = 1
        sb.indexAddresses = [5]
        sb.trees[0] = TreeRoot(root: 9, height: 2, count: 77)
        let b = sb.encode()
        #expect(b.count == 4096)
        func u16(_ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * $1) } }
        func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * $1) } }
        #expect(u16(4) == 0x5342)                       // block type
        #expect(u16(6) == 1)                            // format version
        #expect(Array(b[8..<16]) == Array("ZUMASNAP".utf8))
        #expect(u64(16) == 1)                           // slot: sequence 7 is odd -> slot 1
        #expect(u64(24) == 7)
        #expect(u32(32) == 16384)
        #expect(u64(48) == 1000)
        #expect(u64(56) == 1 << 30)
        #expect(Array(b[64..<80]) == Array(1...16))
        #expect(u64(80) == 42)
        #expect(u64(88) == 900)
        #expect(u64(96) == 3)
        #expect(u64(104) == 0x0102_0304_0506_0708)
        #expect(u64(112) == 9 && u32(120) == 2 && u64(128) == 77)
        #expect(u64(208) == 0x0803 && u32(224) == 2 && u32(228) == 9)
        #expect(u32(232) == 1 && u32(236) == 1 && u32(240) == 90)
        #expect(Array(b[256..<265]) == Array("/dev/sdb1".utf8))
        #expect(u64(1280) == 5)
        #expect(b[1288...].allSatisfy { $0 == 0 })
        // The checksum covers bytes 4..<4096, seeded with the superblock salt.
        #expect(u32(0) == crc32c(Array(b[4...]), seed: UInt32(0x5342) &* 0x9E37_79B9))
        // Decoding gives back the same superblock; a flipped bit is refused.
        #expect(try Superblock.decode(b, slot: 1) == sb)
        var bad = b
        bad[300] ^= 1
        #expect(throws: StoreError.self) { try Superblock.decode(bad, slot: 1) }
        #expect(throws: StoreError.self) { try Superblock.decode(b, slot: 0) }

        // A single-flush commit: the runs follow the index addresses, and the
        // verified-commit incompatible feature bit says so.
        sb.verifiedRuns = [VerifiedRun(address: 0x1234, count: 3, crc: 0xDEAD_BEEF), VerifiedRun(address: 40, count: 1, crc: 7)]
        let v = sb.encode()
        func vu32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(v[at + $1]) << (8 * $1) } }
        func vu64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(v[at + $1]) << (8 * $1) } }
        #expect(vu32(36) == 1)                          // incompatible features: verified commit
        #expect(vu32(244) == 2)                         // run count
        #expect(vu64(1280) == 5)                        // index address, unchanged
        #expect(vu64(1288) == 0x1234 && vu32(1296) == 3 && vu32(1300) == 0xDEAD_BEEF)
        #expect(vu64(1304) == 40 && vu32(1312) == 1 && vu32(1316) == 7)
        #expect(v[1320...].allSatisfy { $0 == 0 })
        #expect(try Superblock.decode(v, slot: 1) == sb)
        #expect(Superblock.runCapacity(indexCount: 1) == 175)
        // Runs without the feature bit (or the bit without runs) are refused.
        var noBit = v
        noBit[36] = 0
        let sum = crc32c(Array(noBit[4...]), seed: UInt32(0x5342) &* 0x9E37_79B9)
        for i in 0..<4 { noBit[i] = UInt8(truncatingIfNeeded: sum >> (8 * i)) }
        #expect(throws: StoreError.self) { try Superblock.decode(noBit, slot: 1) }

        // A copy-out log commit: the entries follow the runs, the count is at 248, and the
        // copy-out-log incompatible feature bit says so.
        sb.copyOutLog = [CopyOutLogEntry(chunk: 77, epoch: 3, address: 0x4321, count: 9),
                         CopyOutLogEntry(chunk: 1 << 40, epoch: 3, address: 600, count: 1)]
        let l = sb.encode()
        func lu32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(l[at + $1]) << (8 * $1) } }
        func lu64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(l[at + $1]) << (8 * $1) } }
        #expect(lu32(36) == 3)                          // verified commit | copy-out log
        #expect(lu32(244) == 2 && lu32(248) == 2)       // run count, log entry count
        #expect(Array(l[1288..<1320]) == Array(v[1288..<1320]), "runs unchanged")
        #expect(lu64(1320) == 77 && lu64(1328) == 3 && lu64(1336) == 0x4321 && lu32(1344) == 9 && lu32(1348) == 0)
        #expect(lu64(1352) == 1 << 40 && lu64(1360) == 3 && lu64(1368) == 600 && lu32(1376) == 1)
        #expect(l[1384...].allSatisfy { $0 == 0 })
        #expect(try Superblock.decode(l, slot: 1) == sb)
        #expect(Superblock.logCapacity(indexCount: 1, runCount: 2) == 86)
        // A log without its feature bit, or a nonzero reserved word in an entry, is refused.
        func resealed(_ bytes: [UInt8]) -> [UInt8] {
            var out = bytes
            let sum = crc32c(Array(out[4...]), seed: UInt32(0x5342) &* 0x9E37_79B9)
            for i in 0..<4 { out[i] = UInt8(truncatingIfNeeded: sum >> (8 * i)) }
            return out
        }
        var logNoBit = l
        logNoBit[36] = 1
        #expect(throws: StoreError.self) { try Superblock.decode(resealed(logNoBit), slot: 1) }
        var reservedSet = l
        reservedSet[1348] = 1
        #expect(throws: StoreError.self) { try Superblock.decode(resealed(reservedSet), slot: 1) }
        #expect(try Superblock.decode(resealed(l), slot: 1) == sb)

        // The tag index: bit 2 of the incompatible features, and the tags root in the last
        // 24 bytes of the origin path field; the path may then have at most 1000 bytes.
        var tagged = sb
        tagged.verifiedRuns = []
        tagged.copyOutLog = []
        tagged.featuresIncompat = Format.incompatTagIndex
        tagged.trees[4] = TreeRoot(root: 0x55, height: 3, count: 0x0102_0304)
        let t = tagged.encode()
        func tu32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(t[at + $1]) << (8 * $1) } }
        func tu64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(t[at + $1]) << (8 * $1) } }
        #expect(tu32(36) == 4)
        #expect(tu64(1256) == 0x55 && tu32(1264) == 3 && tu32(1268) == 0 && tu64(1272) == 0x0102_0304)
        #expect(Array(t[265..<1256]).allSatisfy { $0 == 0 })
        #expect(try Superblock.decode(t, slot: 1) == tagged)
        #expect(tagged.hasTagIndex && !sb.hasTagIndex)
        // Without the bit those bytes are path and must be zero past it; with it, a path
        // length over 1000 is refused.
        var stray = t
        stray[36] = 0
        #expect(throws: StoreError.self) { try Superblock.decode(resealed(stray), slot: 1) }
        var longPath = t
        longPath[228] = 0xE9                            // 1001 = 0x3E9
        longPath[229] = 0x03
        #expect(throws: StoreError.self) { try Superblock.decode(resealed(longPath), slot: 1) }
        var reservedRoot = t
        reservedRoot[1268] = 1
        #expect(throws: StoreError.self) { try Superblock.decode(resealed(reservedRoot), slot: 1) }
    }

    // MARK: Golden images

    static let goldenDirectory: String = {
        let file = "\(#filePath)"
        return String(file[..<file.lastIndex(of: "/")!]) + "/Golden"
    }()

    /// The deterministic history behind the golden images of format version 1.
    static func makeGolden() throws -> (SimulatedDevice, SimulatedDevice) {
        var options = StoreOptions()
        options.clock = { 1_750_000_000_000_000_000 }
        let store = SimulatedDevice(path: "store", sizeBytes: 256 * 4096, identity: 1)
        let origin = SimulatedDevice(path: "origin", sizeBytes: 16 * 4096, identity: 2)
        let s = try Store.initialize(store: store, origin: origin, chunkSizeBytes: 4096,
                                     volumeUUID: Array(0x10...0x1F), originPath: "/golden/origin", options: options)
        try s.write(offset: 0, pattern(100, 16 * 4096))
        try s.createSnapshot(tag: 1, name: "first")
        try s.write(offset: 4096, pattern(101, 3 * 4096))
        try s.createSnapshot(tag: 2, priority: 5)
        try s.adjustUsecount(tag: 2, by: 2)
        try s.write(offset: 2 * 4096, pattern(102, 4096))
        try s.write(snapshot: 1, offset: 10 * 4096, pattern(103, 100))
        try s.createSnapshot(tag: 3)
        try s.write(offset: 0, pattern(104, 4096))
        try s.deleteSnapshot(tag: 3)
        try s.close()
        return (store, origin)
    }

    /// The contents each side of the golden history must read back.
    static func goldenExpected() -> (origin: [UInt8], one: [UInt8], two: [UInt8]) {
        var one = pattern(100, 16 * 4096)
        var two = one
        two.replaceSubrange(4096..<(4 * 4096), with: pattern(101, 3 * 4096))
        var origin = two
        origin.replaceSubrange((2 * 4096)..<(3 * 4096), with: pattern(102, 4096))
        origin.replaceSubrange(0..<4096, with: pattern(104, 4096))
        one.replaceSubrange((10 * 4096)..<(10 * 4096 + 100), with: pattern(103, 100))
        return (origin, one, two)
    }

    /// The golden store images: before the tag index (upgraded at its first open), and with it.
    static let goldenStores = ["v1-store.img", "v1-tags-store.img"]

    @Test(arguments: goldenStores) func goldenImageVersion1Reads(image: String) throws {
        let storeImage = try readFile("\(FormatTests.goldenDirectory)/\(image)")
        let originImage = try readFile("\(FormatTests.goldenDirectory)/v1-origin.img")
        var options = StoreOptions()
        options.checkOriginIdentity = false
        let device = SimulatedDevice(path: "store", image: storeImage)
        let tagged = try Store<SimulatedDevice>.readSuperblock(device).hasTagIndex
        #expect(tagged == (image != "v1-store.img"))
        let s = try Store(store: device, origin: SimulatedDevice(path: "origin", image: originImage), options: options)
        #expect(try Store<SimulatedDevice>.readSuperblock(device).hasTagIndex, "the first open adds the tag index")
        #expect(try s.snapshots.map(\.tag) == [1, 2])
        #expect(try s.snapshot(tag: 1)?.name == "first")
        #expect(try s.snapshot(tag: 2)?.priority == 5 && s.snapshot(tag: 2)?.usecount == 2)
        #expect(try s.snapshot(tag: 3) == nil)
        #expect(s.status.originPath == "/golden/origin")
        #expect(formatUUID(s.volumeUUID) == "10111213-1415-1617-1819-1a1b1c1d1e1f")
        let expected = FormatTests.goldenExpected()
        expectSame(try s.read(offset: 0, length: 16 * 4096)[...], expected.origin[...], "golden origin")
        expectSame(try s.read(snapshot: 1, offset: 0, length: 16 * 4096)[...], expected.one[...], "golden snapshot 1")
        expectSame(try s.read(snapshot: 2, offset: 0, length: 16 * 4096)[...], expected.two[...], "golden snapshot 2")
        #expect(try s.changedChunks(from: .snapshot(1), to: .snapshot(2)) == [1, 2, 3, 10])
        #expect(try s.check().isClean)
    }

    /// Every metadata block of the golden image decodes and encodes back to exactly its bytes,
    /// and so do both superblocks: the encoders still write format version 1. (Where blocks
    /// land is allocation policy, not format, and may change.)
    @Test(arguments: goldenStores) func goldenImageVersion1ReencodesExactly(name: String) throws {
        let image = try readFile("\(FormatTests.goldenDirectory)/\(name)")
        let cs = 4096
        for slot in 0..<2 {
            let bytes = Array(image[(slot * cs)..<(slot * cs + 4096)])
            #expect(try Superblock.decode(bytes, slot: UInt64(slot)).encode() == bytes, "superblock slot \(slot)")
        }
        let sequence = try Store<SimulatedDevice>.readSuperblock(SimulatedDevice(path: "golden", image: image)).sequence
        var kinds: [String: Int] = [:]
        for chunk in 2..<(image.count / cs) {
            let block = Array(image[(chunk * cs)..<((chunk + 1) * cs)])
            guard let kind = BlockInspector.describe(block, address: UInt64(chunk), maxSequence: sequence) else { continue }
            kinds[kind, default: 0] += 1
            #expect(try BlockInspector.reencode(block, address: UInt64(chunk), maxSequence: sequence) == block, "block \(chunk) (\(kind))")
        }
        #expect(kinds["tree node", default: 0] >= 4 && kinds["bitmap block"] != nil && kinds["bitmap index block"] != nil, "\(kinds)")
    }

    /// Writes the newest golden image; only for a new format version or feature
    /// (ZUMA_WRITE_GOLDEN=1). Older images stay as they are.
    @Test func writeGoldenWhenAsked() throws {
        guard getenv("ZUMA_WRITE_GOLDEN") != nil else { return }
        let (store, origin) = try FormatTests.makeGolden()
        try writeFile("\(FormatTests.goldenDirectory)/\(FormatTests.goldenStores.last!)", store.durable)
        try writeFile("\(FormatTests.goldenDirectory)/v1-origin.img", origin.durable)
    }

    /// Today's code, replaying the golden history, reads back the same contents.
    @Test func goldenHistoryReplaysToSameContents() throws {
        let (store, origin) = try FormatTests.makeGolden()
        let s = try Store(store: SimulatedDevice(path: "s", image: store.durable), origin: SimulatedDevice(path: "o", image: origin.durable, identity: 2))
        let expected = FormatTests.goldenExpected()
        expectSame(try s.read(snapshot: 1, offset: 0, length: 16 * 4096)[...], expected.one[...], "replayed snapshot 1")
        expectSame(try s.read(snapshot: 2, offset: 0, length: 16 * 4096)[...], expected.two[...], "replayed snapshot 2")
        #expect(try s.check().isClean)
    }
}

func readFile(_ path: String) throws -> [UInt8] {
    guard let f = fopen(path, "rb") else { throw StoreError.io(operation: "open", path: path, errno: errno) }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buffer, 1, buffer.count, f)
        if n == 0 { break }
        out.append(contentsOf: buffer[0..<n])
    }
    return out
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    guard let f = fopen(path, "wb") else { throw StoreError.io(operation: "open", path: path, errno: errno) }
    defer { fclose(f) }
    guard fwrite(bytes, 1, bytes.count, f) == bytes.count else { throw StoreError.io(operation: "write", path: path, errno: errno) }
}
