// The allocator's runs: consecutive chunks for a copy-out of consecutive origin chunks, found
// past shorter free extents, never a pinned chunk (freed in the running transaction).

import Testing
@testable import SnapStore

@Suite struct SpaceMapTests {
    /// A map of 1,024 chunks in use except `free`, nothing pinned.
    func map(free: [Range<UInt64>]) -> SpaceMap {
        let m = SpaceMap(chunkCount: 1024, blockSize: 4096)
        for c in UInt64(2)..<1024 { m.markAllocated(c) }
        for r in free { for c in r { m.free(c) } }
        m.committed()
        return m
    }

    @Test func aRunGoesPastShorterExtentsToOneThatHoldsItAll() throws {
        let m = map(free: [100..<101, 200..<204, 300..<310])
        #expect(try m.allocateRun(upTo: 8) == 300..<308)
        // Nothing holds 8 now: the longest extent seen, searching on from where the last run
        // ended and round from the start.
        #expect(try m.allocateRun(upTo: 8) == 200..<204)
        #expect(try m.allocateRun(upTo: 8) == 308..<310)
        #expect(try m.allocateRun(upTo: 8) == 100..<101)
        #expect(m.reusable == 0)
        #expect(m.allocations == 15)
        #expect(throws: StoreError.self) { try m.allocateRun(upTo: 1) }
    }

    @Test func aRunNeverTakesAPinnedChunk() throws {
        let m = map(free: [40..<48])
        // Freed in this transaction: pinned until the commit is durable.
        m.free(500)
        m.free(501)
        #expect(try m.allocateRun(upTo: 4) == 40..<44)
        #expect(try m.allocateRun(upTo: 8) == 44..<48)
        #expect(throws: StoreError.self) { try m.allocateRun(upTo: 2) }
        m.committed()
        #expect(try m.allocateRun(upTo: 2) == 500..<502)
    }

    @Test func aChunkAllocatedAndFreedInOneTransactionIsReusableAtOnce() throws {
        let m = map(free: [600..<616])
        let run = try m.allocateRun(upTo: 16)
        #expect(run == 600..<616)
        for c in run { m.free(c, bookkeeping: true) }
        #expect(m.pinned.isEmpty)
        #expect(try m.allocateRun(upTo: 16) == 600..<616)
    }
}
