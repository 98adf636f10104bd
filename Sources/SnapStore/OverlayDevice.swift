// A device that reads through to another and keeps its own writes in memory: a store can be
// opened and checked on it (open may replay a log or finish a delete, and `check` commits)
// without a byte reaching the real device. Used to find out whether a commit is intact
// before anything is changed (Store+Rollback.swift).

public final class OverlayDevice<Base: BlockDevice>: BlockDevice {
    public let base: Base
    /// Writes so far, in order; later ones win where they overlap.
    private var writes: [(offset: UInt64, bytes: [UInt8])] = []
    /// The most bytes the overlay holds: an open and a check write little metadata.
    public static var bytesMax: Int { 256 << 20 }
    private var bytesHeld = 0

    public init(_ base: Base) { self.base = base }

    public var path: String { base.path }
    public var sizeBytes: UInt64 { base.sizeBytes }
    public var identity: DeviceIdentity { base.identity }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        try base.read(into: buffer, at: offset)
        let end = offset + UInt64(buffer.count)
        for w in writes {
            let lo = max(offset, w.offset), hi = min(end, w.offset + UInt64(w.bytes.count))
            guard lo < hi else { continue }
            w.bytes.withUnsafeBytes { src in
                UnsafeMutableRawBufferPointer(rebasing: buffer[Int(lo - offset)..<Int(hi - offset)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: src[Int(lo - w.offset)..<Int(hi - w.offset)]))
            }
        }
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        precondition(offset + UInt64(buffer.count) <= sizeBytes, "write past the end of \(path)")
        bytesHeld += buffer.count
        guard bytesHeld <= Self.bytesMax else {
            throw StoreError.invalidArgument("\(path): more than \(Self.bytesMax >> 20) MiB written while only looking at the store")
        }
        writes.append((offset, [UInt8](buffer)))
    }

    public func sync() throws {}

    public func resize(to sizeBytes: UInt64) throws {
        throw StoreError.invalidArgument("\(path): no resize while only looking at the store")
    }

    /// Holes are not tracked here: every range may hold data.
    public func dataExtents(in range: Range<UInt64>) throws -> [Range<UInt64>] { range.isEmpty ? [] : [range] }
}
