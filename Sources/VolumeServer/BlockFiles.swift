// FUSE block files: a directory with one regular file per device of the volume, `origin`
// (read-write) and one per snapshot, named by its tag (read-only unless made writable).
// Files appear and go as snapshots are created and deleted: every lookup asks the store.
// An open file is an open of its device (use counting in VolumeHost).
//
// Inode numbers: 1 the directory, 2 the origin, tag + 3 a snapshot; the generation is the
// snapshot's epoch, so a tag reused after a delete is a different file to the kernel.

import CFuse
import Foundation
import Logging
import SnapStore
import VolumeInterface

final class BlockFiles: @unchecked Sendable {
    let directory: String
    private let host: VolumeHost
    private let logger: Logger
    private var fuse: OpaquePointer?
    private let finished = NSCondition()
    private var running = false
    // Directory listings taken at opendir, by handle.
    private let listingsLock = NSLock()
    private var listings: [UInt64: [(name: String, node: zuma_fuse_node)]] = [:]
    private var nextListing: UInt64 = 1

    private let startedNanoseconds = Store<FileDevice>.wallClockNanoseconds()
    static let originInode: UInt64 = 2
    static let firstSnapshotInode: UInt64 = 3

    init(directory: String, volume: String, host: VolumeHost, logger: Logger, threads: Int = 4) throws {
        self.directory = directory
        self.host = host
        self.logger = logger
        try makeDirectory(directory, mode: 0o700)
        var callbacks = zuma_fuse_callbacks(
            lookup: { ctx, name, out in BlockFiles.of(ctx).lookup(String(cString: name!), out!) },
            getattr: { ctx, ino, out in BlockFiles.of(ctx).getattr(ino, out!) },
            opendir: { ctx in BlockFiles.of(ctx).openListing() },
            entry: { ctx, dir, index, out, name, cap in BlockFiles.of(ctx).entry(dir, index, out!, name!, cap) },
            releasedir: { ctx, dir in BlockFiles.of(ctx).releaseListing(dir) },
            open: { ctx, ino, write in BlockFiles.of(ctx).open(ino, write: write != 0) },
            release: { ctx, ino in BlockFiles.of(ctx).release(ino) },
            read: { ctx, ino, buffer, size, offset in
                BlockFiles.of(ctx).read(ino, UnsafeMutableRawBufferPointer(start: buffer, count: size), offset)
            },
            write: { ctx, ino, buffer, size, offset in
                BlockFiles.of(ctx).write(ino, UnsafeRawBufferPointer(start: buffer, count: size), offset)
            },
            fsync: { ctx, _ in BlockFiles.of(ctx).fsync() },
            zero: { ctx, ino, offset, length in BlockFiles.of(ctx).zero(ino, offset, length) })
        var message = [CChar](repeating: 0, count: 256)
        let ctx = Unmanaged.passUnretained(self).toOpaque()
        guard let f = zuma_fuse_mount(directory, "zumastor:\(volume)", &callbacks, ctx, &message, message.count) else {
            throw VolumeError.system(stringFromC(message))
        }
        fuse = f
        running = true
        nonisolated(unsafe) let session = f
        let t = Thread { [self] in
            let rc = zuma_fuse_run(session, Int32(threads))
            if rc != 0 { logger.warning("FUSE request loop ended with \(rc)") }
            finished.lock()
            running = false
            finished.broadcast()
            finished.unlock()
        }
        t.name = "fuse"
        t.start()
        // Only once requests are served: a stat of the mount point asks this process.
        var st = stat()
        if stat(directory, &st) == 0 {
            connection = UInt32(truncatingIfNeeded: st.st_dev & 0xff) | UInt32(truncatingIfNeeded: (st.st_dev >> 12) & 0xfff00)
        }
    }

    /// Path of the block file of the origin (nil) or a snapshot.
    func path(tag: UInt64?) -> String { directory + "/" + (tag.map(String.init) ?? "origin") }

    /// Unmounts and waits for the request threads to end. A block file still open (a loop
    /// device under a mounted filesystem) keeps the connection alive after a lazy unmount;
    /// after a grace period the connection is aborted, and that device's I/O fails from then on.
    func stop() {
        guard let f = fuse else { return }
        zuma_fuse_unmount(f)
        finished.lock()
        var deadline = Date().addingTimeInterval(5)
        while running {
            if !finished.wait(until: deadline) && running {
                finished.unlock()
                logger.warning("block files still open (a device still mounted?); aborting the FUSE connection")
                abortConnection()
                finished.lock()
                deadline = Date().addingTimeInterval(3600)
            }
        }
        finished.unlock()
        zuma_fuse_destroy(f)
        fuse = nil
    }

    /// FUSE connection number (the minor of the mount's device), for fusectl.
    private var connection: UInt32?

    private func abortConnection() {
        guard let connection else { return }
        let control = "/sys/fs/fuse/connections"
        if !FileManager.default.fileExists(atPath: "\(control)/\(connection)") {
            mount("fusectl", control, "fusectl", 0, nil)
        }
        let fd = Foundation.open("\(control)/\(connection)/abort", O_WRONLY)
        guard fd >= 0 else {
            logger.error("cannot abort FUSE connection \(connection): \(describeErrno(errno))")
            return
        }
        _ = Foundation.write(fd, "1", 1)
        Foundation.close(fd)
    }

    private static func of(_ ctx: UnsafeMutableRawPointer?) -> BlockFiles {
        Unmanaged<BlockFiles>.fromOpaque(ctx!).takeUnretainedValue()
    }

    // MARK: Names and attributes

    private func tag(of ino: UInt64) -> UInt64? { ino >= BlockFiles.firstSnapshotInode ? ino - BlockFiles.firstSnapshotInode : nil }

    private func node(tag: UInt64?) -> zuma_fuse_node? {
        guard let tag else {
            guard let size = host.sizeBytes(snapshot: nil) else { return nil }
            return zuma_fuse_node(ino: BlockFiles.originInode, size: size, generation: 0, mtime_ns: startedNanoseconds, writable: 1)
        }
        guard tag <= UInt64.max - BlockFiles.firstSnapshotInode, let info = try? host.snapshot(tag: tag) else { return nil }
        return zuma_fuse_node(ino: tag + BlockFiles.firstSnapshotInode, size: info.originSizeBytes, generation: info.epoch,
                              mtime_ns: info.createdNanoseconds,
                              writable: host.isWritable(snapshot: tag) ? 1 : 0)
    }

    private func lookup(_ name: String, _ out: UnsafeMutablePointer<zuma_fuse_node>) -> Int32 {
        let found: zuma_fuse_node?
        if name == "origin" {
            found = node(tag: nil)
        } else if let tag = UInt64(name), String(tag) == name {
            found = node(tag: tag)
        } else {
            found = nil
        }
        guard let found else { return ENOENT }
        out.pointee = found
        return 0
    }

    private func getattr(_ ino: UInt64, _ out: UnsafeMutablePointer<zuma_fuse_node>) -> Int32 {
        guard ino == BlockFiles.originInode || ino >= BlockFiles.firstSnapshotInode, let n = node(tag: tag(of: ino)) else { return ENOENT }
        out.pointee = n
        return 0
    }

    private func openListing() -> UInt64 {
        var entries: [(name: String, node: zuma_fuse_node)] = []
        if let n = node(tag: nil) { entries.append(("origin", n)) }
        for s in (try? host.snapshots()) ?? [] where s.tag <= UInt64.max - BlockFiles.firstSnapshotInode {
            entries.append((String(s.tag), zuma_fuse_node(ino: s.tag + BlockFiles.firstSnapshotInode, size: s.originSizeBytes,
                                                          generation: s.epoch, mtime_ns: s.createdNanoseconds, writable: 0)))
        }
        listingsLock.lock()
        defer { listingsLock.unlock() }
        let handle = nextListing
        nextListing += 1
        listings[handle] = entries
        return handle
    }

    private func entry(_ dir: UInt64, _ index: UInt64, _ out: UnsafeMutablePointer<zuma_fuse_node>,
                       _ name: UnsafeMutablePointer<CChar>, _ cap: Int) -> Int32 {
        listingsLock.lock()
        defer { listingsLock.unlock() }
        guard let entries = listings[dir], index < UInt64(entries.count) else { return ENOENT }
        let e = entries[Int(index)]
        out.pointee = e.node
        let bytes = Array(e.name.utf8.prefix(cap - 1))
        for (i, b) in bytes.enumerated() { name[i] = CChar(bitPattern: b) }
        name[bytes.count] = 0
        return 0
    }

    private func releaseListing(_ dir: UInt64) {
        listingsLock.lock()
        listings[dir] = nil
        listingsLock.unlock()
    }

    // MARK: I/O

    private func open(_ ino: UInt64, write: Bool) -> Int32 {
        if ino != BlockFiles.originInode && ino < BlockFiles.firstSnapshotInode { return EISDIR }
        do {
            try host.open(snapshot: tag(of: ino), writable: write)
            return 0
        } catch VolumeError.invalidArgument {
            return EROFS
        } catch {
            return errnoCode(error)
        }
    }

    private func release(_ ino: UInt64) { host.close(snapshot: tag(of: ino)) }

    private func read(_ ino: UInt64, _ buffer: UnsafeMutableRawBufferPointer, _ offset: UInt64) -> Int32 {
        do {
            try host.read(snapshot: tag(of: ino), offset: offset, into: buffer)
            return 0
        } catch {
            logger.error("read of \(buffer.count) bytes at \(offset) of \(describe(ino)) failed: \(error)")
            return errnoCode(error)
        }
    }

    private func write(_ ino: UInt64, _ data: UnsafeRawBufferPointer, _ offset: UInt64) -> Int32 {
        do {
            try host.write(snapshot: tag(of: ino), offset: offset, data)
            return 0
        } catch {
            logger.error("write of \(data.count) bytes at \(offset) of \(describe(ino)) failed: \(error)")
            return errnoCode(error)
        }
    }

    /// Discard and write-zeroes of a loop device on the block file (fallocate punch-hole or
    /// zero-range): the range reads as zeros, a hole in the origin where it can be.
    private func zero(_ ino: UInt64, _ offset: UInt64, _ length: UInt64) -> Int32 {
        do {
            try host.writeZeros(snapshot: tag(of: ino), offset: offset, length: length)
            return 0
        } catch {
            logger.error("zeroing \(length) bytes at \(offset) of \(describe(ino)) failed: \(error)")
            return errnoCode(error)
        }
    }

    private func fsync() -> Int32 {
        do {
            try host.flush()
            return 0
        } catch {
            logger.error("flush failed: \(error)")
            return errnoCode(error)
        }
    }

    private func describe(_ ino: UInt64) -> String { tag(of: ino).map { "snapshot \($0)" } ?? "the origin" }
}
