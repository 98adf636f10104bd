// What a `ddsnap` command can ask of a volume, whether it opened the store itself
// (`VolumeHost`) or reaches a running server through its control socket (`ControlClient`).
// Both answer with the same values and throw the same errors, so a command prints the same
// output either way. This module is the layer between the store and its users: the server
// implements it, delta streams (Replication) use it, and neither depends on the other.

import Foundation
import SnapStore

public protocol VolumeAccess: AnyObject {
    func status() throws -> StoreStatus
    func snapshots() throws -> [SnapshotInfo]
    func snapshot(tag: UInt64) throws -> SnapshotInfo?
    /// `createdNanoseconds` nil: now.
    func createSnapshot(tag: UInt64, name: String, priority: Int8, createdNanoseconds: UInt64?) throws -> SnapshotInfo
    /// Deletes a snapshot; returns the number of chunks that became free.
    func deleteSnapshot(tag: UInt64) throws -> UInt64
    func adjustUsecount(tag: UInt64, by delta: Int64) throws -> UInt32
    func setPriority(tag: UInt64, _ priority: Int8) throws
    func usage(tag: UInt64) throws -> SnapshotUsage
    /// Streams bytes [offset, offset + length) of the origin or a snapshot (length nil: to the
    /// end) to `sink`, in pieces of at most 1 MiB.
    func read(snapshot: UInt64?, offset: UInt64, length: UInt64?,
              to sink: (UnsafeRawBufferPointer) throws -> Void) throws
    /// Reads bytes [offset, offset + buffer.count) of the origin or a snapshot into `buffer`,
    /// all of them or an error (no copy through a buffer of the server connection).
    func read(snapshot: UInt64?, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws
    /// Reads `ranges` of the origin or a snapshot in order, each into the start of the buffer
    /// `buffer(i)` gives just before range i arrives (at least as long as the range), calling
    /// `each(i)` once range i is there. A server streams them back to back for one request,
    /// reading ahead while the caller uses each range. Every range is non-empty; at most
    /// `readRangesCountMax` ranges, `readRangesBytesMax` bytes in all.
    func read(snapshot: UInt64?, ranges: [(offset: UInt64, length: Int)],
              into buffer: (Int) throws -> UnsafeMutableRawBufferPointer, each: (Int) throws -> Void) throws
    /// Writes what `source` fills (it returns how many bytes it put in the buffer; 0 ends the
    /// stream) at `offset`, then (with `flush`) flushes. Returns the number of bytes written.
    func write(snapshot: UInt64?, offset: UInt64, flush: Bool,
               from source: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> UInt64
    /// Writes several extents of the origin, not flushed: a bulk write that flushes at its end
    /// (a delta apply). A store opened here copies out what all of them need with one commit
    /// and starts writing the extents back at once; a server takes them one by one (its group
    /// commit shares commits among concurrent writers).
    func write(originExtents extents: [(offset: UInt64, data: UnsafeRawBufferPointer)]) throws
    /// Makes every write before it durable (origin sync, commit, store sync).
    func flush() throws
    /// The chunks that differ between two sides, in increasing order, from chunk `start`, at
    /// most `limit` of them (nil: all).
    func changedChunks(from: StoreSide, to: StoreSide, startingAt start: UInt64, limit: UInt64?,
                       _ body: (UInt64) throws -> Void) throws
    /// The chunks within `chunks` of the origin or a snapshot that may hold data (the rest
    /// reads as zeros); at most `dataRangesChunksMax` chunks per call.
    func dataRanges(snapshot: UInt64?, chunks: Range<UInt64>) throws -> [Range<UInt64>]
    /// Makes this store a replica of volume `uuid` (only while it holds no snapshot).
    func adoptVolumeUUID(_ uuid: [UInt8]) throws
    /// Reverts the origin to a snapshot; returns the number of chunks rewritten.
    func revert(to tag: UInt64) throws -> Int
    func resizeOrigin(to bytes: UInt64) throws -> StoreStatus
    func resizeStore(to bytes: UInt64) throws -> StoreStatus
    func check(repair: Bool) throws -> CheckReport
    /// Where the store is: a path for a direct open, the socket for a server.
    var location: String { get }
}

extension VolumeAccess {
    public func createSnapshot(tag: UInt64, name: String, priority: Int8) throws -> SnapshotInfo {
        try createSnapshot(tag: tag, name: name, priority: priority, createdNanoseconds: nil)
    }

    public func write(snapshot: UInt64?, offset: UInt64,
                      from source: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> UInt64 {
        try write(snapshot: snapshot, offset: offset, flush: true, from: source)
    }

    public func read(snapshot: UInt64?, ranges: [(offset: UInt64, length: Int)],
                     into buffer: (Int) throws -> UnsafeMutableRawBufferPointer, each: (Int) throws -> Void) throws {
        try checkReadRanges(ranges)
        for (i, r) in ranges.enumerated() {
            let b = try buffer(i)
            try checkRangeBuffer(b, r.length)
            try read(snapshot: snapshot, offset: r.offset, into: UnsafeMutableRawBufferPointer(rebasing: b[0..<r.length]))
            try each(i)
        }
    }

    public func changedChunks(from: StoreSide, to: StoreSide, _ body: (UInt64) throws -> Void) throws {
        try changedChunks(from: from, to: to, startingAt: 0, limit: nil, body)
    }

    /// Reads the ranges back to back into `buffer` (their lengths' sum at least), with one
    /// request; empty ranges take no room and are not asked for.
    public func read(snapshot: UInt64?, backToBack ranges: [(offset: UInt64, length: Int)], into buffer: UnsafeMutableRawBufferPointer) throws {
        var at: [Int] = []
        var next = 0
        for r in ranges where r.length > 0 { at.append(next); next += r.length }
        let wanted = ranges.filter { $0.length > 0 }
        try checkRangeBuffer(buffer, next)
        try read(snapshot: snapshot, ranges: wanted, into: { i in
            UnsafeMutableRawBufferPointer(rebasing: buffer[at[i]..<(at[i] + wanted[i].length)])
        }) { _ in }
    }
}

/// The widest chunk range one `dataRanges` call takes (its reply stays small).
public let dataRangesChunksMax: UInt64 = 16384

/// Pieces of a streamed read or write.
public let streamPieceBytes = 1 << 20

/// The most ranges one `read(snapshot:ranges:...)` takes, and the most bytes in all.
public let readRangesCountMax = 1024
public let readRangesBytesMax: UInt64 = 64 << 20

/// The most extents one batched origin write over the control socket takes, and the most
/// bytes in all (a longer list goes as several requests, each its own commit).
public let writeExtentsCountMax = 8192
public let writeExtentsBytesMax = 16 << 20

/// Refuses a list of ranges that breaks the limits of `read(snapshot:ranges:...)`.
public func checkReadRanges(_ ranges: [(offset: UInt64, length: Int)]) throws {
    guard ranges.count <= readRangesCountMax else {
        throw VolumeError.invalidArgument("\(ranges.count) ranges in one read: at most \(readRangesCountMax)")
    }
    var total: UInt64 = 0
    for r in ranges {
        guard r.length > 0, UInt64(r.length) <= readRangesBytesMax, r.offset <= UInt64.max - UInt64(r.length) else {
            throw VolumeError.invalidArgument("read range of \(r.length) bytes at \(r.offset)")
        }
        total += UInt64(r.length)
    }
    guard total <= readRangesBytesMax else {
        throw VolumeError.invalidArgument("\(total) bytes in one read of ranges: at most \(readRangesBytesMax)")
    }
}

/// Refuses a buffer too short for the range that goes into it.
public func checkRangeBuffer(_ buffer: UnsafeMutableRawBufferPointer, _ length: Int) throws {
    guard buffer.count >= length else {
        throw VolumeError.invalidArgument("a buffer of \(buffer.count) bytes for a read range of \(length)")
    }
}
