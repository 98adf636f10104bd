// The first key of an internal node (issue 18). Copy-outs of high chunks first, then of low
// chunks, split the exceptions tree's root and then its first child: the parent's key[0] must
// stay below the separator the split adds, or the node is written out of order and the store
// no longer opens once the node leaves the cache (after a restart). Also: a store written
// before the fix, whose node holds such a key[0], opens and stays usable.

import Testing
import SnapStore
import SnapStoreTestKit

@Suite struct TreeOrderTests {
    static let cs = 4096

    /// Snapshot 1, then one copy-out per write: chunks 600..<800, then 0..<400 (a leaf holds
    /// 169 exceptions at 4 KiB chunks). Returns the durable images after a clean close.
    func highThenLowCopyOuts(_ f: Fixture) throws -> Store<SimulatedDevice> {
        let s = try f.initialize()
        try s.write(offset: 0, pattern(1, 1024 * Self.cs))
        try s.createSnapshot(tag: 1)
        for c in Array(600..<800) + Array(0..<400) {
            try s.write(offset: UInt64(c * Self.cs), pattern(UInt64(1000 + c), Self.cs))
        }
        return s
    }

    @Test func lowCopyOutsAfterHighOnesReopenClean() throws {
        let f = Fixture(originBytes: 1024 * Self.cs, storeBytes: 4096 * Self.cs)
        let s = try highThenLowCopyOuts(f)
        #expect(try s.check().isClean)
        try s.close()
        // A fresh process: every node is decoded from disk.
        let r = try f.reopenedFromDurable()
        let report = try r.check()
        #expect(report.isClean, "\(report.problems.prefix(3))")
        expectSame(try r.read(snapshot: 1, offset: 0, length: 1024 * Self.cs)[...], pattern(1, 1024 * Self.cs)[...], "snapshot 1")
    }

    /// A node as the writer before the fix left it: key[0] of the exceptions tree's root above
    /// its key[1]. Open accepts it, check is clean, reads are right, and later changes keep
    /// the store clean across another reopen.
    @Test func aStoreWrittenBeforeTheFixOpens() throws {
        let f = Fixture(originBytes: 1024 * Self.cs, storeBytes: 4096 * Self.cs)
        try highThenLowCopyOuts(f).close()
        var image = f.store.durable
        let sb = try Store<SimulatedDevice>.readSuperblock(SimulatedDevice(path: "s", image: image))
        let root = sb.trees[0]
        #expect(root.height >= 2)
        let base = Int(root.root) * Self.cs
        #expect(image[base + 7] > 0, "the root is an internal node")
        // key[0] := (900, 1), above every other key of the node; re-seal the block.
        for i in 0..<16 { image[base + 32 + i] = 0 }
        image[base + 32] = UInt8(900 & 0xFF)
        image[base + 33] = UInt8(900 >> 8)
        image[base + 40] = 1
        let sum = crc32c(Array(image[(base + 4)..<(base + Self.cs)]), seed: UInt32(0x4E44) &* 0x9E37_79B9)
        for i in 0..<4 { image[base + i] = UInt8(truncatingIfNeeded: sum >> (8 * i)) }

        let s = try Store(store: SimulatedDevice(path: "store", image: image, identity: 1),
                          origin: SimulatedDevice(path: "origin", image: f.origin.durable, identity: 2), options: f.options)
        #expect(try s.check().isClean)
        expectSame(try s.read(snapshot: 1, offset: 0, length: 1024 * Self.cs)[...], pattern(1, 1024 * Self.cs)[...], "snapshot 1")
        try s.createSnapshot(tag: 2)
        for c in stride(from: 1000, to: 0, by: -7) { try s.write(offset: UInt64(c * Self.cs), pattern(UInt64(5000 + c), Self.cs)) }
        try s.close()
        let r = try Store(store: SimulatedDevice(path: "store", image: s.storeDevice.durable, identity: 1),
                          origin: SimulatedDevice(path: "origin", image: s.originDevice.durable, identity: 2), options: f.options)
        #expect(try r.check().isClean)
        expectSame(try r.read(snapshot: 1, offset: 0, length: 1024 * Self.cs)[...], pattern(1, 1024 * Self.cs)[...], "snapshot 1 after more changes")
    }
}
