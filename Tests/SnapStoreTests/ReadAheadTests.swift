// Read-ahead of snapshot reads: a read that continues the one before hints the store device
// with exactly the store chunks of the window after it; other reads hint nothing.

import Testing
import SnapStoreTestKit
@testable import SnapStore

@Suite struct ReadAheadTests {
    @Test func aSequentialSnapshotReadHintsTheStoreChunksOfTheNextWindow() throws {
        let f = Fixture(originBytes: 256 * 4096, storeBytes: 2048 * 4096)
        let s = try f.initialize()
        let old = pattern(1, 256 * 4096)
        try s.write(offset: 0, old)
        try s.createSnapshot(tag: 1)
        // Every other chunk rewritten: snapshot 1 reads those from the store, the rest from
        // the origin.
        for c in stride(from: 0, to: 256, by: 2) { try s.write(offset: UInt64(c * 4096), pattern(2, 4096)) }
        try s.flush()
        let window = Store<SimulatedDevice>.readAheadMinBytes
        let epoch = try #require(try s.snapshot(tag: 1)).epoch
        func hinted() -> Set<UInt64> {
            Set(f.store.readHints.flatMap { r in stride(from: r.lowerBound, to: r.upperBound, by: 4096).map { $0 / 4096 } })
        }
        func storeChunks(_ bytes: Range<Int>) throws -> Set<UInt64> {
            var out = Set<UInt64>()
            for c in (bytes.lowerBound / 4096)..<(bytes.upperBound / 4096) {
                if case let .store(at) = try s.locate(epoch: epoch, chunk: UInt64(c)) { out.insert(at) }
            }
            return out
        }
        expectSame(try s.read(snapshot: 1, offset: 0, length: window)[...], old[0..<window], "first window")
        #expect(f.store.readHints.isEmpty, "a first read hints nothing")
        expectSame(try s.read(snapshot: 1, offset: UInt64(window), length: window)[...], old[window..<(2 * window)], "second window")
        #expect(hinted() == (try storeChunks((2 * window)..<(3 * window))))
        #expect(!hinted().isEmpty)
        let before = f.store.readHints.count
        // Not where the last read ended, or too small: no hint.
        _ = try s.read(snapshot: 1, offset: 0, length: window)
        _ = try s.read(snapshot: 1, offset: UInt64(window), length: 4096)
        #expect(f.store.readHints.count == before)
        // Read on in order from the start: each read hints the window after it, and the last
        // one nothing past the snapshot's end.
        for k in 0..<4 { _ = try s.read(snapshot: 1, offset: UInt64(k * window), length: window) }
        #expect(hinted() == (try storeChunks((2 * window)..<(4 * window))))
    }
}
