// The device layer: the only place the store core touches I/O. A device is a byte-addressed
// extent with positional read/write and a durability barrier. Reads and writes are whole:
// short transfers and EINTR are handled by the implementation, never by callers.

/// What identifies the thing behind a path (so a store notices a swapped origin).
public struct DeviceIdentity: Equatable, Sendable {
    public enum Kind: UInt32, Sendable { case unknown = 0, regularFile = 1, blockDevice = 2 }
    public var kind: Kind
    /// st_dev for files, st_rdev for block devices.
    public var device: UInt64
    /// st_ino for files, 0 for block devices.
    public var inode: UInt64
    public init(kind: Kind, device: UInt64, inode: UInt64) {
        self.kind = kind
        self.device = device
        self.inode = inode
    }
}

public protocol BlockDevice: AnyObject {
    /// Where it lives, for messages.
    var path: String { get }
    var sizeBytes: UInt64 { get }
    var identity: DeviceIdentity { get }
    /// Fills `buffer` from `offset`; the range must lie within `sizeBytes`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws
    /// Writes all of `buffer` at `offset`; the range must lie within `sizeBytes`.
    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws
    /// Returns when every write before it is durable. A failure is fatal for the caller:
    /// the page cache can no longer be trusted.
    func sync() throws
    /// Changes the size (regular files); block devices refuse.
    func resize(to sizeBytes: UInt64) throws
    /// Reads the size again (a block device grown or shrunk underneath, e.g. `losetup -c`).
    func refreshSize() throws
    /// The byte ranges within `range` that may hold data; the rest reads as zeros. A device
    /// that cannot tell answers the whole range.
    func dataExtents(in range: Range<UInt64>) throws -> [Range<UInt64>]
    /// Makes bytes [offset, offset + length) read as zeros (a hole where the device can, else
    /// written zeros); durable after `sync()` like a write.
    func writeZeros(at offset: UInt64, length: UInt64) throws
    /// Makes `length` bytes of `device` at `target` share this device's extents at `offset`
    /// (a reflink: no data copied); false when it cannot (copy another way).
    /// Durable after the target's `sync()`, like a write.
    func copy(_ length: UInt64, at offset: UInt64, to device: any BlockDevice, at target: UInt64) throws -> Bool
    /// Copies `length` bytes at `offset` to `device` at `target` in the kernel: the data is
    /// copied, not shared, but never reaches user memory. False when it cannot (copy by hand).
    /// Durable after the target's `sync()`, like a write.
    func copyInKernel(_ length: UInt64, at offset: UInt64, to device: any BlockDevice, at target: UInt64) throws -> Bool
    /// A hint: start writing [offset, offset + length) to the disk now, without waiting, so a
    /// later `sync()` has less left to do. Errors surface at that `sync()`.
    func startWriteback(at offset: UInt64, length: UInt64)
    /// A hint: [offset, offset + length) will be read soon; start reading it now, without
    /// waiting.
    func willRead(at offset: UInt64, length: UInt64)
}

extension BlockDevice {
    public func refreshSize() throws {}
    public func dataExtents(in range: Range<UInt64>) throws -> [Range<UInt64>] { range.isEmpty ? [] : [range] }
    public func copy(_ length: UInt64, at offset: UInt64, to device: any BlockDevice, at target: UInt64) throws -> Bool { false }
    public func copyInKernel(_ length: UInt64, at offset: UInt64, to device: any BlockDevice, at target: UInt64) throws -> Bool { false }
    public func startWriteback(at offset: UInt64, length: UInt64) {}
    public func willRead(at offset: UInt64, length: UInt64) {}

    public func writeZeros(at offset: UInt64, length: UInt64) throws {
        try writeZeroBytes(at: offset, length: length)
    }

    /// Zeros written in pieces of at most 1 MiB.
    public func writeZeroBytes(at offset: UInt64, length: UInt64) throws {
        let zeros = [UInt8](repeating: 0, count: Int(min(length, 1 << 20)))
        var done: UInt64 = 0
        try zeros.withUnsafeBytes { z in
            while done < length {
                let n = Int(min(UInt64(z.count), length - done))
                try write(UnsafeRawBufferPointer(rebasing: z[0..<n]), at: offset + done)
                done += UInt64(n)
            }
        }
    }
}

extension BlockDevice {
    func read(into array: inout [UInt8], at offset: UInt64) throws {
        try array.withUnsafeMutableBytes { try read(into: $0, at: offset) }
    }
    func write(_ array: [UInt8], at offset: UInt64) throws {
        try array.withUnsafeBytes { try write($0, at: offset) }
    }
}
