// The tag index and the paged snapshot table: snapshot records are read through the node
// cache (snapshots tree by epoch, tags tree by tag), never held all in memory. Lookups by
// any tag, listing in epoch order, deletes in any order, reopen, and damage to the index.

import Testing
@testable import SnapStore
import SnapStoreTestKit

@Suite struct TagIndexTests {
    /// Tags in no relation to epochs: a permutation of a large range.
    static func scrambledTag(_ i: Int) -> UInt64 { UInt64((i * 7919) % 100_003 + 1) }

    @Test func scrambledTagsAreFoundListedAndDeletedThroughASmallCache() throws {
        let count = 3000
        var f = Fixture(originBytes: 16 * 4096, storeBytes: 4096 * 4096)
        f.options.cacheSizeBytes = 0          // the smallest cache: 64 nodes
        let s = try f.initialize()
        for i in 0..<count {
            try s.write(offset: UInt64(i % 16) * 4096, pattern(UInt64(i), 4096))
            try s.createSnapshot(tag: TagIndexTests.scrambledTag(i), name: "s\(i)")
        }
        #expect(throws: StoreError.snapshotExists(TagIndexTests.scrambledTag(17))) {
            try s.createSnapshot(tag: TagIndexTests.scrambledTag(17))
        }
        #expect(s.pager.cachedNodeCount <= s.pager.cacheNodesMax + s.pager.dirty.count)
        // Delete every third, in an order unrelated to both tags and epochs.
        var rng = SeededGenerator(seed: 9)
        let doomed = stride(from: 0, to: count, by: 3).shuffled(using: &rng)
        for i in doomed { try s.deleteSnapshot(tag: TagIndexTests.scrambledTag(i)) }
        try s.flush()
        let kept = (0..<count).filter { $0 % 3 != 0 }
        for r in [s, try f.reopenedFromDurable()] {
            #expect(try r.snapshots.map(\.tag) == kept.map(TagIndexTests.scrambledTag), "listed in epoch order")
            #expect(r.status.snapshotCount == kept.count)
            for i in stride(from: 0, to: count, by: 7) {
                let info = try r.snapshot(tag: TagIndexTests.scrambledTag(i))
                #expect(info?.name == (i % 3 == 0 ? nil : "s\(i)"), "snapshot \(i)")
            }
            // Snapshot i holds chunk i % 16 as the write before it left it.
            let i = kept[kept.count / 2]
            #expect(try r.read(snapshot: TagIndexTests.scrambledTag(i), offset: UInt64(i % 16) * 4096, length: 4096) == pattern(UInt64(i), 4096))
            let report = try r.check()
            #expect(report.isClean, "\(report.problems.prefix(3))")
            #expect(report.snapshots == kept.count)
        }
        // A deleted tag can be taken again, by a new epoch.
        try s.createSnapshot(tag: TagIndexTests.scrambledTag(0))
        #expect(try s.snapshots.last?.tag == TagIndexTests.scrambledTag(0))
    }

    @Test func theNewestLiveSnapshotIsFoundPastDeletedAndSquashedOnes() throws {
        let f = Fixture(originBytes: 16 * 4096, storeBytes: 1024 * 4096)
        let s = try f.initialize()
        for tag in UInt64(1)...5 {
            try s.write(offset: 0, pattern(tag, 4096))
            try s.createSnapshot(tag: tag * 10)
        }
        try s.squashSnapshot(tag: 50)
        try s.deleteSnapshot(tag: 40)
        #expect(s.epochNewestLive == 3)
        #expect(try s.liveNeighbours(of: 3) == (previous: 2, next: .max))
        #expect(try s.liveNeighbours(of: 1) == (previous: 0, next: 2))
        // A write now copies out for snapshot 30 (epoch 3), and snapshot 30 keeps its data.
        try s.write(offset: 0, pattern(99, 4096))
        #expect(try s.read(snapshot: 30, offset: 0, length: 4096) == pattern(3, 4096))
        let r = try f.reopenedFromDurable()
        #expect(r.epochNewestLive == 3)
        #expect(try r.snapshots.map(\.tag) == [10, 20, 30, 50])
        #expect(r.status.squashedCount == 1)
    }

    /// Damage that the trees' checksums cannot see (a wrong but well-formed entry, written
    /// by a commit): lookups refuse it as corrupt, and check names it.
    @Test func aTagEntryNamingTheWrongEpochIsReported() throws {
        var f = Fixture()
        f.options.selfCheck = false  // the commit writes the damage on purpose
        let s = try f.initialize()
        for tag in UInt64(1)...3 { try s.createSnapshot(tag: tag) }
        try s.tagTree.upsert(Key(2, 0), 3)
        s.superblockDirty = true
        try s.commit()
        let r = try f.reopenedFromDurable()
        #expect(throws: StoreError.self) { try r.snapshot(tag: 2) }
        let report = try r.check()
        #expect(report.problems.contains { $0.contains("tags tree: snapshot 2 (epoch 2) is listed under epoch 3") }, "\(report.problems)")
    }

    @Test func aTagsTreeThatDisagreesWithTheRecordsIsRefusedAtOpen() throws {
        var f = Fixture()
        f.options.selfCheck = false  // the commit writes the damage on purpose
        let s = try f.initialize()
        for tag in UInt64(1)...3 { try s.createSnapshot(tag: tag) }
        try s.tagTree.remove(Key(3, 0))
        s.superblockDirty = true
        try s.commit()
        #expect(throws: StoreError.corrupt("tags tree holds 2 tags for 3 snapshot records")) { try f.reopenedFromDurable() }
    }
}
