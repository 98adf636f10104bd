// A snapshot's persistent record: the value of the snapshots tree, keyed by (epoch, 0).
// Layout: docs/FORMAT.md "Snapshot record". Encoded into 8-byte words, the tree's value unit.

public enum SnapshotState: UInt8, Sendable, Equatable {
    case normal = 0
    /// Its data was given up when the store filled; reads fail with EIO; listed until deleted.
    case squashed = 1
    /// A delete is in progress (resumed at open); not visible to users.
    case deleting = 2
    /// A squash is in progress (resumed at open).
    case squashing = 3
}

public struct SnapshotRecord: Equatable, Sendable {
    static let words = 14

    public var tag: UInt64
    public var epoch: UInt64
    public var createdNanoseconds: UInt64
    public var originSizeBytes: UInt64
    public var priority: Int8 = 0
    public var state: SnapshotState = .normal
    public var usecount: UInt32 = 0
    /// Progress of a pending delete or squash: the next (epoch, chunk) to look at.
    public var cursorEpoch: UInt64 = 0
    public var cursorChunk: UInt64 = 0
    public var name: String = ""

    /// Users see it (listed, found by tag): normal or squashed, not being deleted or squashed.
    var isListed: Bool { state == .normal || state == .squashed }

    public init(tag: UInt64, epoch: UInt64, createdNanoseconds: UInt64, originSizeBytes: UInt64) {
        self.tag = tag
        self.epoch = epoch
        self.createdNanoseconds = createdNanoseconds
        self.originSizeBytes = originSizeBytes
    }

    func encode(into words: inout [UInt64], at index: Int) {
        var bytes = [UInt8](repeating: 0, count: SnapshotRecord.words * 8)
        let nameBytes = Array(name.utf8)
        precondition(nameBytes.count <= Format.snapshotNameMax)
        bytes.withUnsafeMutableBytes { b in
            b.putU64(tag, 0)
            b.putU64(createdNanoseconds, 8)
            b.putU64(originSizeBytes, 16)
            b.putU8(UInt8(bitPattern: priority), 24)
            b.putU8(state.rawValue, 25)
            b.putU32(usecount, 28)
            b.putU64(cursorEpoch, 32)
            b.putU64(cursorChunk, 40)
            b.putU8(UInt8(nameBytes.count), 48)
            for (i, c) in nameBytes.enumerated() { b.putU8(c, 49 + i) }
        }
        bytes.withUnsafeBytes { b in
            for w in 0..<SnapshotRecord.words { words[index + w] = b.u64(w * 8) }
        }
    }

    static func decode(epoch: UInt64, words: ArraySlice<UInt64>, where location: String) throws -> SnapshotRecord {
        precondition(words.count == SnapshotRecord.words)
        var bytes = [UInt8](repeating: 0, count: SnapshotRecord.words * 8)
        bytes.withUnsafeMutableBytes { b in
            for (i, w) in words.enumerated() { b.putU64(w, i * 8) }
        }
        return try bytes.withUnsafeBytes { b in
            guard let state = SnapshotState(rawValue: b.u8(25)) else {
                throw StoreError.corrupt("\(location): snapshot epoch \(epoch) has unknown state \(b.u8(25))")
            }
            let nameLength = Int(b.u8(48))
            guard nameLength <= Format.snapshotNameMax, b.isZero(26..<28), b.isZero((49 + nameLength)..<112) else {
                throw StoreError.corrupt("\(location): snapshot epoch \(epoch) has bad name length or reserved bytes")
            }
            var r = SnapshotRecord(tag: b.u64(0), epoch: epoch, createdNanoseconds: b.u64(8), originSizeBytes: b.u64(16))
            r.priority = Int8(bitPattern: b.u8(24))
            r.state = state
            r.usecount = b.u32(28)
            r.cursorEpoch = b.u64(32)
            r.cursorChunk = b.u64(40)
            r.name = String(decoding: b[49..<(49 + nameLength)], as: UTF8.self)
            return r
        }
    }
}
