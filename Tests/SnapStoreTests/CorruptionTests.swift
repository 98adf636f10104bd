// Corrupt images: a flipped bit in any metadata block is caught (on open, on a read, or by
// check) with a message naming the block; a leaked chunk is found and repaired.

import Testing
import SnapStore
import SnapStoreTestKit

@Suite struct CorruptionTests {
    /// A small store with some history; returns its durable images.
    func images() throws -> (store: [UInt8], origin: [UInt8]) {
        let (s, o) = try FormatTests.makeGolden()
        return (s.durable, o.durable)
    }

    func open(_ store: [UInt8], _ origin: [UInt8]) throws -> Store<SimulatedDevice> {
        var options = StoreOptions()
        options.checkOriginIdentity = false
        return try Store(store: SimulatedDevice(path: "store", image: store), origin: SimulatedDevice(path: "origin", image: origin),
                         options: options)
    }

    /// Opens, reads everything, and checks: returns the first complaint.
    func complaint(_ store: [UInt8], _ origin: [UInt8]) -> String? {
        do {
            let s = try open(store, origin)
            for snap in try s.snapshots { _ = try s.read(snapshot: snap.tag, offset: 0, length: Int(snap.originSizeBytes)) }
            let report = try s.check()
            return report.isClean ? nil : (report.problems.first ?? "leaked \(report.leakedChunks)")
        } catch {
            return "\(error)"
        }
    }

    @Test func everyMetadataBlockIsProtected() throws {
        let (store, origin) = try images()
        #expect(complaint(store, origin) == nil)
        let cs = 4096
        var typesSeen = Set<UInt16>()
        for chunk in 2..<(store.count / cs) {
            let base = chunk * cs
            let type = UInt16(store[base + 4]) | UInt16(store[base + 5]) << 8
            guard [0x4E44, 0x424D, 0x4249].contains(type) else { continue }
            // A block of the live tree? Only live ones matter: stale copies are free chunks.
            for offset in [0, 8, 24, 40, 200, cs - 1] {
                var bad = store
                bad[base + offset] ^= 0x10
                guard let text = complaint(bad, origin) else { continue }
                typesSeen.insert(type)
                #expect(text.contains("block \(chunk)") || text.contains("checksum"), "chunk \(chunk) offset \(offset): \(text)")
            }
        }
        // Nodes, bitmap blocks and index blocks were all found and caught.
        #expect(typesSeen == [0x4E44, 0x424D, 0x4249])
    }

    @Test func leakIsFoundAndRepaired() throws {
        var (store, origin) = try images()
        // Mark a free chunk in use: set its bit in the bitmap block, re-seal the block, and
        // fix the superblock's free count so the store still opens.
        let cs = 4096
        var sb = try Store<SimulatedDevice>.readSuperblock(SimulatedDevice(path: "s", image: store))
        let indexBase = Int(sb.indexAddresses[0]) * cs
        let bitmapAddress = Int(store[indexBase + 32]) | Int(store[indexBase + 33]) << 8
        let bitmapBase = bitmapAddress * cs
        let leaked = 200  // near the end of a 256-chunk store: free in this history
        #expect(store[bitmapBase + 32 + leaked / 8] & (1 << (leaked % 8)) == 0)
        store[bitmapBase + 32 + leaked / 8] |= 1 << (leaked % 8)
        let sum = crc32c(Array(store[(bitmapBase + 4)..<(bitmapBase + cs)]), seed: UInt32(0x424D) &* 0x9E37_79B9)
        for i in 0..<4 { store[bitmapBase + i] = UInt8(truncatingIfNeeded: sum >> (8 * i)) }
        sb.freeChunkCount -= 1
        let slot = Int(sb.sequence % 2) * cs
        store.replaceSubrange(slot..<(slot + 4096), with: sb.encode())
        let s = try open(store, origin)
        let report = try s.check()
        #expect(report.problems.isEmpty)
        #expect(report.leakedChunks == [UInt64(leaked)])
        let repaired = try s.check(repair: true)
        #expect(repaired.repaired)
        #expect(try s.check().isClean)
    }

    @Test func wrongOriginAndShrunkOrigin() throws {
        let (store, origin) = try images()
        // The golden store was made for identity inode 2; this one is inode 9.
        #expect(throws: StoreError.self) {
            try Store(store: SimulatedDevice(path: "store", image: store), origin: SimulatedDevice(path: "o", image: origin, identity: 9))
        }
        var options = StoreOptions()
        options.checkOriginIdentity = false
        do {
            _ = try Store(store: SimulatedDevice(path: "store", image: store),
                          origin: SimulatedDevice(path: "o", image: Array(origin.prefix(4096))), options: options)
            Issue.record("a shrunk origin opened")
        } catch let e as StoreError {
            #expect("\(e)".contains("shrank behind our back"))
        }
    }

    @Test func eioIsReportedAndPoisons() throws {
        let f = Fixture()
        let s = try f.initialize()
        try s.write(offset: 0, pattern(1, 8 * 4096))
        try s.createSnapshot(tag: 1)
        f.origin.failReadsAt = [4096]
        // The copy-out of chunk 1 cannot read the origin: the write fails, nothing is lost.
        #expect(throws: StoreError.self) { try s.write(offset: 4096, pattern(2, 4096)) }
        f.origin.failReadsAt = []
        let r = try f.reopenedFromDurable()
        expectSame(try r.read(snapshot: 1, offset: 0, length: 8 * 4096)[...], pattern(1, 8 * 4096)[...], "snapshot after EIO")
        #expect(try r.check().isClean)
    }
}
