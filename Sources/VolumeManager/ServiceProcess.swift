// What the host's long-running zumastor processes share (the replication service, the metrics
// exporter): their stop signals blocked, to be taken by sigwait; their log; and their pid file,
// locked while they run (which is how `start`, `stop` and `status` find them: lockedPID).

import Foundation
import Logging
import VolumeServer

struct ServiceProcess {
    let log: Logger
    /// SIGTERM, SIGINT and SIGHUP, blocked in this thread and every one it starts.
    var signals = sigset_t()
    private let pidFile: String
    private let fd: Int32

    /// Blocks the signals, opens the log `logPath` (lines of `name`) and takes the lock of
    /// `pidFile` (root's alone); throws when another process of the kind holds it.
    init(name: String, what: String, logPath: String, pidFile: String) throws {
        sigemptyset(&signals)
        for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        log = try makeVolumeLogger(program: "zumastor", volume: name, path: logPath, toStandardError: false)
        try FileManager.default.createDirectory(atPath: (pidFile as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let fd = open(pidFile, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0, flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            if fd >= 0 { close(fd) }
            log.error("another \(what) runs")
            throw ZumastorError.failed("a \(what) already runs")
        }
        (self.pidFile, self.fd) = (pidFile, fd)
    }

    /// Once it serves: its pid into the pid file, then `lines`.
    func announce(_ lines: [String] = []) {
        ftruncate(fd, 0)
        let text = Array(([String(getpid())] + lines).map { $0 + "\n" }.joined().utf8)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    }

    /// The next stop or re-read signal, waiting at most `seconds` (nil: for ever); nil on timeout.
    func nextSignal(within seconds: Int? = nil) -> Int32? {
        var signals = self.signals
        guard let seconds else {
            var signal: Int32 = 0
            return sigwait(&signals, &signal) == 0 ? signal : nil
        }
        var timeout = timespec(tv_sec: seconds, tv_nsec: 0)
        let signal = sigtimedwait(&signals, nil, &timeout)
        return signal > 0 ? signal : nil
    }

    /// At exit: the pid file goes, and its lock with it.
    func release() {
        unlink(pidFile)
        close(fd)
    }
}

extension VolumeManager {
    /// Starts `zumastor ARGUMENTS` detached and waits up to 10 s until `running()` says it
    /// serves; false when it exited first or did not come up in time.
    func startService(_ arguments: [String], what: String, running: () -> Bool) throws -> Bool {
        guard let path = Executables.find("zumastor", variable: "ZUMASTOR_EXE", besides: ddsnapPath) else {
            throw ZumastorError.failed("cannot find the zumastor executable to run the \(what)")
        }
        try FileManager.default.createDirectory(atPath: paths.run, withIntermediateDirectories: true)
        let pid: pid_t
        do {
            pid = try system.spawnDetached(path, arguments)
        } catch {
            throw ZumastorError.failed("cannot start the \(what): \(error)")
        }
        for _ in 0..<200 {
            if running() { return true }
            if system.exited(pid) { break }
            usleep(50_000)
        }
        return false
    }

    /// Sends SIGTERM to the service at `pid` and waits up to `seconds` until `running()` says it is gone.
    func stopService(_ pid: pid_t, what: String, seconds: Int, running: () -> Bool) throws {
        _ = system.signal(pid, SIGTERM)
        for _ in 0..<(seconds * 20) {
            if !running() { return }
            usleep(50_000)
        }
        throw ZumastorError.failed("the \(what) (pid \(pid)) did not stop within \(seconds) s")
    }
}
