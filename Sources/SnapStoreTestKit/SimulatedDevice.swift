// A block device in memory that remembers which bytes are durable. Writes land in a volatile
// view and in a list of unsynced writes; sync makes the view durable. A crash (at a chosen
// I/O, or on demand) keeps, drops or tears each unsynced write, chosen by a seeded random
// generator, and the surviving image is what a restarted process would find on disk. It can
// also fail I/O with EIO on chosen operations.

import SnapStore

public struct SimulatedCrash: Error, CustomStringConvertible {
    public let io: Int
    public var description: String { "simulated crash at I/O \(io)" }
}

/// Counts I/O across devices so a crash or an error can be placed at any operation of a
/// workload.
public final class IOClock {
    public var count = 0
    /// Throw `SimulatedCrash` when `count` reaches this.
    public var crashAt: Int?
    /// Fail the I/O that makes `count` this with `failErrno` (EIO by default), without doing
    /// it; the ones before and after it work.
    public var failAt: Int?
    public var failErrno: Int32 = 5
    public init() {}
    func tick(_ operation: String, _ path: String) throws {
        count += 1
        if let crashAt, count >= crashAt { throw SimulatedCrash(io: count) }
        if let failAt, count == failAt { throw StoreError.io(operation: operation, path: path, errno: failErrno) }
    }
}

public final class SimulatedDevice: BlockDevice {
    /// What a file on a given filesystem can do besides reads and writes. Each is simulated
    /// with the crash behaviour of a write: until the next sync it may be lost, kept, or torn.
    public struct Features: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// Sparse: blocks that read as zeros are holes (`dataExtents` skips them), and
        /// `writeZeros` punches.
        public static let holes = Features(rawValue: 1)
        /// `copy` shares extents with another such device (FICLONERANGE; block aligned).
        public static let reflinks = Features(rawValue: 2)
        /// `copyInKernel` copies to another such device (copy_file_range).
        public static let kernelCopy = Features(rawValue: 4)
        /// A file on XFS or btrfs.
        public static let all: Features = [.holes, .reflinks, .kernelCopy]
    }

    /// The block size of holes and reflinks.
    public static let fileBlockBytes = 4096

    public let path: String
    public var features: Features = []
    public let identity: DeviceIdentity
    public private(set) var sizeBytes: UInt64
    /// What a reader sees now.
    public private(set) var current: [UInt8]
    /// What survives a crash for sure.
    public private(set) var durable: [UInt8]
    private var unsynced: [(offset: Int, bytes: [UInt8])] = []
    let clock: IOClock
    /// Offsets at which reads fail with EIO (whole-operation match on the start offset).
    public var failReadsAt: Set<UInt64> = []
    public private(set) var syncs = 0
    /// The read-ahead hints received, in order.
    public private(set) var readHints: [Range<UInt64>] = []
    public func willRead(at offset: UInt64, length: UInt64) { readHints.append(offset..<(offset + length)) }

    public init(path: String, sizeBytes: UInt64, clock: IOClock = IOClock(), identity: UInt64 = 1, features: Features = []) {
        self.path = path
        self.features = features
        self.sizeBytes = sizeBytes
        self.clock = clock
        self.identity = DeviceIdentity(kind: .regularFile, device: 42, inode: identity)
        current = [UInt8](repeating: 0, count: Int(sizeBytes))
        durable = current
    }

    /// A device whose durable and current contents are `image` (a restart after a crash).
    public init(path: String, image: [UInt8], clock: IOClock = IOClock(), identity: UInt64 = 1, features: Features = []) {
        self.path = path
        self.features = features
        sizeBytes = UInt64(image.count)
        self.clock = clock
        self.identity = DeviceIdentity(kind: .regularFile, device: 42, inode: identity)
        current = image
        durable = image
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        precondition(offset + UInt64(buffer.count) <= sizeBytes, "read past the end of \(path)")
        try clock.tick("read", path)
        if failReadsAt.contains(offset) { throw StoreError.io(operation: "read", path: path, errno: 5) }
        current.withUnsafeBytes { src in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[Int(offset)..<(Int(offset) + buffer.count)]))
        }
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        precondition(offset + UInt64(buffer.count) <= sizeBytes, "write past the end of \(path)")
        try clock.tick("write", path)
        record([UInt8](buffer), at: Int(offset))
    }

    /// A change not yet durable: seen by readers now, kept, dropped or torn by a crash.
    private func record(_ bytes: [UInt8], at offset: Int) {
        current.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
        unsynced.append((offset, bytes))
    }

    /// With `.holes`: the file blocks in `range` that hold a non-zero byte. A block of zeros
    /// is reported as a hole, which is what a hole promises (it reads as zeros).
    public func dataExtents(in range: Range<UInt64>) throws -> [Range<UInt64>] {
        guard features.contains(.holes) else { return range.isEmpty ? [] : [range] }
        precondition(range.upperBound <= sizeBytes, "extents past the end of \(path)")
        try clock.tick("lseek SEEK_DATA", path)
        let b = UInt64(Self.fileBlockBytes)
        var out: [Range<UInt64>] = []
        var block = range.lowerBound / b * b
        while block < range.upperBound {
            let piece = max(block, range.lowerBound)..<min(block + b, range.upperBound)
            let isData = current[Int(block)..<Int(min(block + b, sizeBytes))].contains { $0 != 0 }
            if isData {
                if let last = out.last, last.upperBound == piece.lowerBound {
                    out[out.count - 1] = last.lowerBound..<piece.upperBound
                } else {
                    out.append(piece)
                }
            }
            block += b
        }
        return out
    }

    /// With `.holes`, a punch: one operation, lost, kept or torn by a crash like a write.
    public func writeZeros(at offset: UInt64, length: UInt64) throws {
        guard features.contains(.holes) else { return try writeZeroBytes(at: offset, length: length) }
        precondition(offset + length <= sizeBytes, "punch past the end of \(path)")
        try clock.tick("fallocate", path)
        record([UInt8](repeating: 0, count: Int(length)), at: Int(offset))
    }

    /// With `.reflinks` on both devices and whole file blocks (or up to the source's end): the
    /// target's range takes the source's current bytes, as one unsynced change of the target.
    public func copy(_ length: UInt64, at offset: UInt64, to device: any BlockDevice, at target: UInt64) throws -> Bool {
        let b = UInt64(Self.fileBlockBytes)
        guard features.contains(.reflinks), let to = device as? SimulatedDevice, to.features.contains(.reflinks),
              offset % b == 0, target % b == 0, length % b == 0 || offset + length == sizeBytes else { return false }
        try copyBytes(length, at: offset, to: to, at: target)
        return true
    }

    /// With `.kernelCopy` on both devices: like a write of the source's current bytes.
    public func copyInKernel(_ length: UInt64, at offset: UInt64, to device: any BlockDevice, at target: UInt64) throws -> Bool {
        guard features.contains(.kernelCopy), let to = device as? SimulatedDevice, to.features.contains(.kernelCopy) else { return false }
        try copyBytes(length, at: offset, to: to, at: target)
        return true
    }

    private func copyBytes(_ length: UInt64, at offset: UInt64, to: SimulatedDevice, at target: UInt64) throws {
        precondition(offset + length <= sizeBytes && target + length <= to.sizeBytes, "copy past the end of \(path) or \(to.path)")
        try clock.tick("copy to \(to.path)", path)
        to.record(Array(current[Int(offset)..<Int(offset + length)]), at: Int(target))
    }

    public func sync() throws {
        try clock.tick("fdatasync", path)
        for w in unsynced { durable.replaceSubrange(w.offset..<(w.offset + w.bytes.count), with: w.bytes) }
        unsynced.removeAll()
        syncs += 1
    }

    public func resize(to newSize: UInt64) throws {
        try clock.tick("ftruncate", path)
        // Size changes are treated as durable metadata operations.
        let n = Int(newSize)
        if n < current.count { current.removeSubrange(n...) } else { current.append(contentsOf: [UInt8](repeating: 0, count: n - current.count)) }
        if n < durable.count { durable.removeSubrange(n...) } else { durable.append(contentsOf: [UInt8](repeating: 0, count: n - durable.count)) }
        // Unsynced writes past the new end are cut off there.
        unsynced = unsynced.compactMap { w in
            guard w.offset < n else { return nil }
            return (w.offset, Array(w.bytes.prefix(n - w.offset)))
        }
        sizeBytes = newSize
    }

    public var unsyncedCount: Int { unsynced.count }

    /// The image after a crash now: each unsynced write is kept, dropped, or torn (a random
    /// prefix of whole 512-byte sectors kept), in order.
    public func crashImage<R: RandomNumberGenerator>(using rng: inout R) -> [UInt8] {
        var image = durable
        for w in unsynced {
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: continue
            case 1: image.replaceSubrange(w.offset..<(w.offset + w.bytes.count), with: w.bytes)
            default:
                let sectors = (w.bytes.count + 511) / 512
                let keep = Int.random(in: 0...sectors, using: &rng) * 512
                let n = min(keep, w.bytes.count)
                image.replaceSubrange(w.offset..<(w.offset + n), with: w.bytes[0..<n])
            }
        }
        return image
    }
}

/// SplitMix64: a small deterministic generator, so a seed replays a run exactly.
public struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
