import Testing
import SnapStore
import SnapStoreTestKit

@Suite struct StoreBasicsTests {
    @Test func initializeOpenEmpty() throws {
        let f = Fixture()
        let s = try f.initialize()
        #expect(try s.snapshots.isEmpty)
        #expect(s.chunkSizeBytes == 4096)
        let r = try f.open()
        #expect(try r.check().isClean)
    }

    @Test func snapshotKeepsOldContents() throws {
        let f = Fixture()
        let s = try f.initialize()
        let a = pattern(1, 64 * 4096)
        try s.write(offset: 0, a)
        try s.createSnapshot(tag: 1)
        let b = pattern(2, 10000)
        try s.write(offset: 5000, b)
        var expected = a
        expected.replaceSubrange(5000..<15000, with: b)
        expectSame(try s.read(offset: 0, length: a.count)[...], expected[...], "contents")
        expectSame(try s.read(snapshot: 1, offset: 0, length: a.count)[...], a[...], "contents")
        try s.createSnapshot(tag: 2)
        try s.write(offset: 0, pattern(3, 4096))
        expectSame(try s.read(snapshot: 2, offset: 0, length: a.count)[...], expected[...], "contents")
        expectSame(try s.read(snapshot: 1, offset: 0, length: a.count)[...], a[...], "contents")
        #expect(try s.changedChunks(from: .snapshot(1), to: .snapshot(2)) == [1, 2, 3])
        #expect(try s.changedChunks(from: .snapshot(2), to: .origin) == [0])
        #expect(try s.changedChunks(from: .snapshot(1), to: .origin) == [0, 1, 2, 3])
        try s.flush()
        let r = try f.reopenedFromDurable()
        expectSame(try r.read(snapshot: 1, offset: 0, length: a.count)[...], a[...], "contents")
        expectSame(try r.read(snapshot: 2, offset: 0, length: a.count)[...], expected[...], "contents")
        #expect(try r.check().isClean)
        try r.deleteSnapshot(tag: 1)
        expectSame(try r.read(snapshot: 2, offset: 0, length: a.count)[...], expected[...], "contents")
        let report = try r.check()
        #expect(report.isClean, "\(report.problems) leaks \(report.leakedChunks)")
        try r.deleteSnapshot(tag: 2)
        #expect(r.status.exceptionCount == 0)
        #expect(try r.check().isClean)
    }

    @Test func zeroingTheOriginKeepsSnapshots() throws {
        let f = Fixture()
        let s = try f.initialize()
        let a = pattern(3, 64 * 4096)
        try s.write(offset: 0, a)
        try s.createSnapshot(tag: 1)
        // Partial chunks at both ends, whole chunks between: all copied out first.
        try s.writeZeros(originOffset: 3000, length: 20000)
        var expected = a
        expected.replaceSubrange(3000..<23000, with: [UInt8](repeating: 0, count: 20000))
        expectSame(try s.read(offset: 0, length: a.count)[...], expected[...], "origin after zeroing")
        expectSame(try s.read(snapshot: 1, offset: 0, length: a.count)[...], a[...], "snapshot after zeroing")
        try s.flush()
        let r = try f.reopenedFromDurable()
        expectSame(try r.read(snapshot: 1, offset: 0, length: a.count)[...], a[...], "snapshot after a crash")
        expectSame(try r.read(offset: 0, length: a.count)[...], expected[...], "origin after a crash")
        #expect(try r.check().isClean)
        #expect(throws: StoreError.self) { try s.writeZeros(originOffset: 64 * 4096 - 10, length: 20) }
    }

    @Test func errors() throws {
        let f = Fixture()
        let s = try f.initialize()
        try s.createSnapshot(tag: 7)
        #expect(throws: StoreError.snapshotExists(7)) { try s.createSnapshot(tag: 7) }
        #expect(throws: StoreError.snapshotMissing(8)) { try s.deleteSnapshot(tag: 8) }
        #expect(throws: StoreError.usecountUnderflow(7)) { try s.adjustUsecount(tag: 7, by: -1) }
        #expect(try s.adjustUsecount(tag: 7, by: 2) == 2)
        #expect(throws: StoreError.self) { try s.read(offset: 64 * 4096 - 10, length: 20) }
        #expect(throws: StoreError.self) { try s.write(offset: UInt64.max - 3, [1, 2, 3, 4, 5]) }
        #expect(try s.check().isClean)
    }
}
