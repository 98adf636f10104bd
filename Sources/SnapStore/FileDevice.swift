// A BlockDevice on a regular file or a block device node: pread/pwrite/fdatasync with EINTR
// and short-transfer handling in one place, and an exclusive flock so that two processes can
// never open the same store.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSupport

public final class FileDevice: BlockDevice {
    public let path: String
    public private(set) var sizeBytes: UInt64
    public let identity: DeviceIdentity
    let fd: Int32
    /// The open file (for ioctls on the device).
    public var descriptor: Int32 { fd }
    let readOnly: Bool

    /// Opens `path`; with `lock`, takes an exclusive non-blocking flock or throws `.inUse`.
    public init(path: String, readOnly: Bool = false, lock: Bool = true) throws {
        self.path = path
        self.readOnly = readOnly
        let fd = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.io(operation: "open", path: path, errno: currentErrno()) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = currentErrno()
            close(fd)
            throw StoreError.io(operation: "stat", path: path, errno: e)
        }
        let mode = st.st_mode & S_IFMT
        if mode == S_IFBLK {
            let size = zuma_block_device_size(fd)
            guard size >= 0 else {
                let e = currentErrno()
                close(fd)
                throw StoreError.io(operation: "BLKGETSIZE64", path: path, errno: e)
            }
            sizeBytes = UInt64(size)
            identity = DeviceIdentity(kind: .blockDevice, device: UInt64(st.st_rdev), inode: 0)
        } else if mode == S_IFREG {
            sizeBytes = UInt64(st.st_size)
            identity = DeviceIdentity(kind: .regularFile, device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        } else {
            close(fd)
            throw StoreError.invalidArgument("\(path) is neither a regular file nor a block device")
        }
        if lock && zuma_lock_exclusive(fd) != 0 {
            let e = currentErrno()
            close(fd)
            if e == EWOULDBLOCK { throw StoreError.inUse(path: path) }
            throw StoreError.io(operation: "flock", path: path, errno: e)
        }
        self.fd = fd
    }

    deinit { close(fd) }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws {
        precondition(offset + UInt64(buffer.count) <= sizeBytes, "read past the end of \(path)")
        try transfer("read", count: buffer.count, at: offset) { pread(fd, buffer.baseAddress! + $0, buffer.count - $0, $1) }
    }

    public func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws {
        precondition(!readOnly, "write to read-only device \(path)")
        precondition(offset + UInt64(buffer.count) <= sizeBytes, "write past the end of \(path)")
        try transfer("write", count: buffer.count, at: offset) { pwrite(fd, buffer.baseAddress! + $0, buffer.count - $0, $1) }
    }

    /// Repeats `step(done, file offset)` (a pread or pwrite of the rest) until `count` bytes
    /// moved, past interruptions. A read that meets the end of the file means the file is
    /// shorter than its recorded size: it was truncated behind our back.
    private func transfer(_ operation: String, count: Int, at offset: UInt64, _ step: (Int, off_t) -> Int) throws {
        var done = 0
        while done < count {
            let n = step(done, off_t(offset) + off_t(done))
            if n < 0 {
                if currentErrno() == EINTR { continue }
                throw StoreError.io(operation: operation, path: path, errno: currentErrno())
            }
            if n == 0 {
                throw StoreError.originMismatch("\(path) ended at byte \(offset + UInt64(done)), before its expected size \(sizeBytes)")
            }
            done += n
        }
    }

    public func sync() throws {
        while fdatasync(fd) != 0 {
            if currentErrno() == EINTR { continue }
            throw StoreError.io(operation: "fdatasync", path: path, errno: currentErrno())
        }
    }

    /// A hole (PUNCH_HOLE, else ZERO_RANGE; BLKZEROOUT on a block device), else written zeros.
    public func writeZeros(at offset: UInt64, length: UInt64) throws {
        guard length > 0 else { return }
        if zuma_punch_zeros(fd, offset, length) == 0 { return }
        try writeZeroBytes(at: offset, length: length)
    }

    /// Between two regular files on a filesystem with reflinks (XFS, btrfs): the target shares
    /// the source's extents (FICLONERANGE), no data is copied. Anything else is copied by the
    /// caller (`copyInKernel`, or by hand).
    public func copy(_ length: UInt64, at offset: UInt64, to device: any BlockDevice, at target: UInt64) throws -> Bool {
        try copyBetweenFiles(length, at: offset, to: device, at: target, works: \.cloneWorks, operation: "FICLONERANGE", zuma_clone_range)
    }

    /// Between two regular files (copy_file_range; ext4 copies page by page in the kernel).
    /// For small copies a read and a write through a warm buffer measured faster, and they
    /// give the commit its checksum without a reread; for megabytes in a fresh process, this
    /// saves the buffer's page faults and one pass over the data (10 MiB: 3 ms against 7 ms).
    public func copyInKernel(_ length: UInt64, at offset: UInt64, to device: any BlockDevice, at target: UInt64) throws -> Bool {
        try copyBetweenFiles(length, at: offset, to: device, at: target, works: \.kernelCopyWorks, operation: "copy_file_range", zuma_copy_range)
    }

    /// A copy to another regular file with `call` (a C helper: 0, or -1 and errno). False when
    /// the files cannot take it; a refusal is remembered in `works` and not asked again.
    private func copyBetweenFiles(_ length: UInt64, at offset: UInt64, to device: any BlockDevice, at target: UInt64,
                                  works: ReferenceWritableKeyPath<FileDevice, Bool>, operation: String,
                                  _ call: (Int32, UInt64, Int32, UInt64, UInt64) -> Int32) throws -> Bool {
        guard let other = device as? FileDevice, identity.kind == .regularFile, other.identity.kind == .regularFile,
              self[keyPath: works], other[keyPath: works] else { return false }
        precondition(offset + length <= sizeBytes && target + length <= other.sizeBytes, "copy past the end of \(path) or \(other.path)")
        precondition(!other.readOnly, "copy to read-only device \(other.path)")
        if call(fd, offset, other.fd, target, length) == 0 { return true }
        let e = currentErrno()
        switch e {
        case EXDEV, EINVAL, EOPNOTSUPP, ENOTTY, ENOSYS, EBADF, EPERM, ETXTBSY:
            self[keyPath: works] = false
            return false
        default:
            throw StoreError.io(operation: "\(operation) to \(other.path)", path: path, errno: e)
        }
    }

    /// Cleared when the kernel refuses a copy between this file and another once.
    var kernelCopyWorks = true

    /// posix_fadvise WILLNEED: the kernel starts reading the range into the page cache.
    public func willRead(at offset: UInt64, length: UInt64) {
        guard length > 0 else { return }
        _ = posix_fadvise(fd, off_t(offset), off_t(length), POSIX_FADV_WILLNEED)
    }

    public func startWriteback(at offset: UInt64, length: UInt64) {
        guard !readOnly, length > 0 else { return }
        _ = zuma_start_writeback(fd, offset, length)
    }

    /// Cleared when the filesystem refuses a reflink of this file once (not asked again).
    var cloneWorks = true

    /// A regular file answers with its allocated extents (SEEK_DATA / SEEK_HOLE).
    public func dataExtents(in range: Range<UInt64>) throws -> [Range<UInt64>] {
        guard identity.kind == .regularFile, !range.isEmpty else { return range.isEmpty ? [] : [range] }
        var out: [Range<UInt64>] = []
        var at = range.lowerBound
        while at < range.upperBound {
            let data = lseek(fd, off_t(at), 3)  // SEEK_DATA
            if data < 0 {
                if currentErrno() == ENXIO { break }  // no data from here to the end of the file
                return [range]                         // the filesystem cannot tell
            }
            if UInt64(data) >= range.upperBound { break }
            let hole = lseek(fd, data, 4)  // SEEK_HOLE
            let end = hole < 0 ? range.upperBound : min(UInt64(hole), range.upperBound)
            out.append(UInt64(data)..<end)
            at = end
        }
        return out
    }

    public func refreshSize() throws {
        if identity.kind == .blockDevice {
            let size = zuma_block_device_size(fd)
            guard size >= 0 else { throw StoreError.io(operation: "BLKGETSIZE64", path: path, errno: currentErrno()) }
            sizeBytes = UInt64(size)
        } else {
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw StoreError.io(operation: "stat", path: path, errno: currentErrno()) }
            sizeBytes = UInt64(st.st_size)
        }
    }

    public func resize(to newSize: UInt64) throws {
        guard identity.kind == .regularFile else {
            throw StoreError.invalidArgument("\(path) is a block device: resize the device itself, then run resize with its new size")
        }
        while ftruncate(fd, off_t(newSize)) != 0 {
            if currentErrno() == EINTR { continue }
            throw StoreError.io(operation: "truncate", path: path, errno: currentErrno())
        }
        sizeBytes = newSize
    }
}
