// What the store fuzzer (Fuzz/Sources/store-fuzz) and the EIO simulation found, each kept as a
// test: a forged but correctly sealed field that once crashed open or a read now makes them
// report the store corrupt; a read error at open is an error, not a commit to skip.
// docs/RELIABILITY.md lists the findings.

import Testing
import SnapStore
import SnapStoreTestKit

@Suite struct FuzzFindingsTests {
    let cs = 4096

    func le(_ b: [UInt8], _ at: Int, _ n: Int) -> UInt64 { (0..<n).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * $1) } }
    func put(_ b: inout [UInt8], _ at: Int, _ v: UInt64, _ n: Int) { for i in 0..<n { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }

    /// Seals block `base` again with the salt of its type (docs/FORMAT.md "Checksums").
    func seal(_ b: inout [UInt8], _ base: Int) {
        let type = UInt32(le(b, base + 4, 2))
        let sum = b.withUnsafeBytes { crc32c(UnsafeRawBufferPointer(rebasing: $0[(base + 4)..<(base + cs)]), seed: type &* 0x9E37_79B9) }
        put(&b, base, UInt64(sum), 4)
    }

    /// The golden history's images, closed cleanly; the newest superblock's slot.
    func images() throws -> (store: [UInt8], origin: [UInt8], slot: Int) {
        let (s, o) = try FormatTests.makeGolden()
        let slot = le(s.durable, 24, 8) > le(s.durable, cs + 24, 8) ? 0 : 1
        return (s.durable, o.durable, slot)
    }

    func open(_ store: [UInt8], _ origin: [UInt8]) throws -> Store<SimulatedDevice> {
        var options = StoreOptions()
        options.checkOriginIdentity = false
        return try Store(store: SimulatedDevice(path: "store", image: store), origin: SimulatedDevice(path: "origin", image: origin), options: options)
    }

    /// Both superblocks changed the same way and sealed, so neither slot is left to fall back on.
    func forgeSuperblocks(_ store: inout [UInt8], _ change: (inout [UInt8], Int) -> Void) {
        for base in [0, cs] {
            change(&store, base)
            seal(&store, base)
        }
    }

    /// The golden history with snapshot 9 created on top, a single-flush commit whose newest
    /// superblock lists its runs: the durable images, that superblock's offset and its first run's.
    func commitWithRuns() throws -> (store: [UInt8], origin: [UInt8], base: Int, firstRun: Int) {
        let (store, origin, _) = try images()
        var options = StoreOptions()
        options.checkOriginIdentity = false
        let storeDevice = SimulatedDevice(path: "store", image: store)
        let s = try Store(store: storeDevice, origin: SimulatedDevice(path: "origin", image: origin), options: options)
        try s.createSnapshot(tag: 9)
        let image = storeDevice.durable
        let base = (le(image, 24, 8) > le(image, cs + 24, 8) ? 0 : 1) * cs
        #expect(le(image, base + 244, 4) > 0)
        return (image, origin, base, base + 1280 + 8 * Int(le(image, base + 236, 4)))
    }

    @Test func storeChunkCountThatOverflowsIsCorrupt() throws {
        var (store, origin, _) = try images()
        forgeSuperblocks(&store) { b, base in put(&b, base + 48, 1 << 60, 8) }
        let error = try #require(throws: StoreError.self) { try open(store, origin) }
        #expect("\(error)".contains("beyond any device"))
    }

    @Test func treeHeightBeyondAnyTreeIsCorrupt() throws {
        var (store, origin, _) = try images()
        // The exceptions-by-chunk root's height (offset 112 + 8).
        forgeSuperblocks(&store) { b, base in put(&b, base + 120, 300, 4) }
        let error = try #require(throws: StoreError.self) { try open(store, origin) }
        #expect("\(error)".contains("tree root") && "\(error)".contains("impossible"))
    }

    @Test func exceptionPointingOutsideTheStoreIsCorrupt() throws {
        var (store, origin, _) = try images()
        // The first exception in every exceptions-by-chunk leaf points far past the store.
        var forged = 0
        for base in stride(from: 2 * cs, to: store.count, by: cs)
        where le(store, base + 4, 2) == 0x4E44 && store[base + 6] == 1 && store[base + 7] == 0 && le(store, base + 24, 4) > 0 {
            put(&store, base + 32 + 16, 1 << 40, 8)
            seal(&store, base)
            forged += 1
        }
        #expect(forged > 0)
        let s = try open(store, origin)
        var complaint = ""
        for snap in try s.snapshots {
            do { _ = try s.read(snapshot: snap.tag, offset: 0, length: Int(snap.originSizeBytes)) } catch { complaint = "\(error)" }
        }
        #expect(complaint.contains("points at store chunk 1099511627776, outside 2..<"))
    }

    @Test func privateChunkFarPastTheSnapshotIsAProblemForCheck() throws {
        var (store, origin, _) = try images()
        // The first private chunk's key names chunk 2^62 (chunk × chunk size overflowed).
        var forged = 0
        for base in stride(from: 2 * cs, to: store.count, by: cs)
        where le(store, base + 4, 2) == 0x4E44 && store[base + 6] == 3 && store[base + 7] == 0 && le(store, base + 24, 4) == 1 {
            put(&store, base + 40, 1 << 62, 8)
            seal(&store, base)
            forged += 1
        }
        #expect(forged > 0)
        let report = try open(store, origin).check()
        #expect(report.problems.contains { $0.contains("private chunk 4611686018427387904 of snapshot 1 is past its size") }, "\(report.problems)")
    }

    @Test func copyOutLogEntryWhoseEndOverflowsIsCorrupt() throws {
        let (store, origin, _) = try images()
        // Copy-outs after a snapshot, flushed: the newest superblock logs them.
        let storeDevice = SimulatedDevice(path: "store", image: store), originDevice = SimulatedDevice(path: "origin", image: origin)
        var options = StoreOptions()
        options.checkOriginIdentity = false
        let s = try Store(store: storeDevice, origin: originDevice, options: options)
        try s.write(offset: UInt64(5 * cs), [UInt8](repeating: 7, count: cs))
        try s.flush()
        var image = storeDevice.durable
        let slot = le(image, 24, 8) > le(image, cs + 24, 8) ? 0 : 1
        let base = slot * cs
        let logged = Int(le(image, base + 248, 4)), indexBlocks = Int(le(image, base + 236, 4)), runs = Int(le(image, base + 244, 4))
        #expect(logged > 0)
        // The first entry's origin chunk: so large that chunk + count wraps around.
        put(&image, base + 1280 + 8 * indexBlocks + 16 * runs, UInt64.max - 1, 8)
        seal(&image, base)
        // Runs list the copied chunks, not the superblock: the forged slot stays the newest.
        let error = try #require(throws: StoreError.self) { try open(image, originDevice.durable) }
        #expect("\(error)".contains("lies past every snapshot's end"), "\(error)")
    }

    @Test func readErrorOnAVerifiedRunFailsTheOpenInsteadOfSkippingTheCommit() throws {
        let (image, origin, _, firstRun) = try commitWithRuns()
        var options = StoreOptions()
        options.checkOriginIdentity = false
        let first = le(image, firstRun, 8)
        let failing = SimulatedDevice(path: "store", image: image)
        failing.failReadsAt = [first * UInt64(cs)]
        let error = try #require(throws: StoreError.self) {
            try Store(store: failing, origin: SimulatedDevice(path: "origin", image: origin), options: options)
        }
        guard case .io = error else { Issue.record("expected the read error, got \(error)"); return }
        // Read again without the error: the newest commit, snapshot 9 in it.
        let reopened = try open(image, origin)
        #expect(try reopened.snapshot(tag: 9) != nil)
    }

    @Test func commitSequenceAtTheEndOfItsRangeIsCorrupt() throws {
        var (store, origin, _) = try images()
        // The next commit's sequence (this one + 1) overflowed.
        forgeSuperblocks(&store) { b, base in put(&b, base + 24, UInt64.max, 8) }
        let error = try #require(throws: StoreError.self) { try open(store, origin) }
        #expect("\(error)".contains("beyond any store"), "\(error)")
    }

    @Test func treeEntryCountAtTheEndOfItsRangeIsCorrupt() throws {
        var (store, origin, _) = try images()
        // The exceptions-by-chunk root's entry count (offset 112 + 16): the next insert overflowed.
        forgeSuperblocks(&store) { b, base in put(&b, base + 128, UInt64.max, 8) }
        let error = try #require(throws: StoreError.self) { try open(store, origin) }
        #expect("\(error)".contains("tree root") && "\(error)".contains("impossible"), "\(error)")
    }

    @Test func verifiedRunWhoseEndOverflowsIsNotRead() throws {
        var (image, origin, base, firstRun) = try commitWithRuns()
        // The first run's address: so large that address + count wraps around.
        put(&image, firstRun, UInt64.max - 1, 8)
        seal(&image, base)
        // That commit is not complete, so the one before it opens (snapshot 9 is not in it).
        let reopened = try open(image, origin)
        #expect(try reopened.snapshot(tag: 9) == nil)
        #expect(try reopened.check().isClean)
    }
}
