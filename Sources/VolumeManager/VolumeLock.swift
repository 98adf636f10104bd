// One zumastor operation at a time per volume: snapshot, start, stop, revert, resize and
// remount hold an exclusive flock on the volume's lock file, so a scheduled snapshot and one
// from cron (or an administrator's stop) never interleave. Nested calls in one process share
// the lock.

import Foundation

final class VolumeLocks: @unchecked Sendable {
    static let shared = VolumeLocks()
    private let mutex = NSLock()
    private var held: [String: (fd: Int32, depth: Int)] = [:]

    func acquire(_ path: String, volume: String) throws {
        mutex.lock()
        if let h = held[path] {
            held[path] = (h.fd, h.depth + 1)
            mutex.unlock()
            return
        }
        mutex.unlock()
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ZumastorError.failed("cannot open \(path): \(String(cString: strerror(errno)))") }
        // Another zumastor command works on this volume: wait for it, up to 10 minutes.
        var waited = 0
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR, waited < 6000 else {
                close(fd)
                throw ZumastorError.failed("volume '\(volume)' is busy: another zumastor command has worked on it for 10 minutes (see /proc/locks for \(path))")
            }
            usleep(100_000)
            waited += 1
        }
        mutex.lock()
        held[path] = (fd, 1)
        mutex.unlock()
    }

    func release(_ path: String) {
        mutex.lock()
        defer { mutex.unlock() }
        guard let h = held[path] else { return }
        if h.depth > 1 {
            held[path] = (h.fd, h.depth - 1)
        } else {
            close(h.fd)
            held[path] = nil
        }
    }
}

extension VolumeManager {
    /// Runs `body` holding volume `name`'s lock (the volume must be defined).
    func withVolumeLock<T>(_ name: String, _ body: () throws -> T) throws -> T {
        _ = try config(name)
        let path = paths.volumeDirectory(name) + "/lock"
        try VolumeLocks.shared.acquire(path, volume: name)
        defer { VolumeLocks.shared.release(path) }
        return try body()
    }
}
