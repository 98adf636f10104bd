// One zumastor operation at a time per volume: snapshot, start, stop, revert, resize and
// remount hold an exclusive flock on the volume's lock file, so a scheduled snapshot and one
// from cron (or an administrator's stop) never interleave. Nested calls in one thread share
// the lock; another thread of the same process (the replication service runs several) waits
// as another process does. Each replication target has a lock of its own, for its cycles.

import Foundation
import VolumeServer

final class VolumeLocks: @unchecked Sendable {
    static let shared = VolumeLocks()
    private let condition = NSCondition()
    /// Locks held by this process: the file (-1 while its flock is being taken), how many
    /// nested holds, and the thread that holds it (another thread of this process waits, as
    /// another process does).
    private var held: [String: (fd: Int32, depth: Int, owner: pthread_t)] = [:]

    /// Takes the lock of `path`, waiting up to 10 minutes; `what` names it in the error.
    func acquire(_ path: String, what: String) throws {
        let me = pthread_self()
        let deadline = Date(timeIntervalSinceNow: 600)
        condition.lock()
        while let h = held[path], pthread_equal(h.owner, me) == 0 {
            guard condition.wait(until: deadline) else {
                condition.unlock()
                throw ZumastorError.failed("\(what) is busy: another operation has held it for 10 minutes")
            }
        }
        if let h = held[path] {
            held[path] = (h.fd, h.depth + 1, me)
            condition.unlock()
            return
        }
        held[path] = (-1, 1, me)
        condition.unlock()
        try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        var failure: String?
        if fd < 0 {
            failure = "cannot open \(path): \(String(cString: strerror(errno)))"
        } else {
            // Another zumastor process works on it: wait for it, up to 10 minutes.
            while flock(fd, LOCK_EX | LOCK_NB) != 0 {
                guard errno == EWOULDBLOCK || errno == EINTR, Date() < deadline else {
                    close(fd)
                    failure = "\(what) is busy: another zumastor command has worked on it for 10 minutes (see /proc/locks for \(path))"
                    break
                }
                usleep(100_000)
            }
        }
        condition.lock()
        defer { condition.unlock() }
        if let failure {
            held[path] = nil
            condition.broadcast()
            throw ZumastorError.failed(failure)
        }
        held[path] = (fd, 1, me)
    }

    func release(_ path: String) {
        condition.lock()
        defer { condition.unlock() }
        guard let h = held[path] else { return }
        if h.depth > 1 {
            held[path] = (h.fd, h.depth - 1, h.owner)
        } else {
            close(h.fd)
            held[path] = nil
            condition.broadcast()
        }
    }
}

extension VolumeManager {
    /// Runs `body` holding volume `name`'s lock (the volume must be defined).
    func withVolumeLock<T>(_ name: String, _ body: () throws -> T) throws -> T {
        // Defined, readable or not: stopping and forgetting a damaged one take the lock too.
        try DaemonConfiguration.validateVolumeName(name)
        guard FileManager.default.fileExists(atPath: paths.configFile(name)) else { throw ZumastorError.unknownVolume(name) }
        return try withLock(paths.volumeDirectory(name) + "/lock", what: "volume '\(name)'", body)
    }

    /// Runs `body` holding the lock file `path` (threads of this process and other processes alike).
    func withLock<T>(_ path: String, what: String, _ body: () throws -> T) throws -> T {
        try VolumeLocks.shared.acquire(path, what: what)
        defer { VolumeLocks.shared.release(path) }
        return try body()
    }
}
