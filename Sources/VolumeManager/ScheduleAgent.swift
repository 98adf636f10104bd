// The schedule agent: one `zumastor agent VOL` process per running master (and per running
// replica with a schedule, where it keeps received snapshots instead: ReplicaRetention). It
// sleeps until the next scheduled kind is due, takes one snapshot carrying every kind due at
// that moment (hourly and daily at midnight make one snapshot), and logs to
// /var/log/zumastor/<vol>/master.log. It re-reads the schedule on SIGHUP and every minute,
// warns in the log when the snapshot store crosses the volume's fill level, and exits on
// SIGTERM, never in the middle of a snapshot. Its pid file stays locked while it runs.

import CSupport
import Foundation
import Logging
import VolumeServer

extension VolumeManager {
    func agentPIDFile(_ name: String) -> String { paths.run + "/agents/" + name + ".pid" }

    /// The running agent's pid (its pid file is locked while it runs).
    public func agentPID(_ name: String) -> pid_t? { lockedPID(agentPIDFile(name)) }

    func startAgent(_ name: String) throws {
        if agentPID(name) != nil { return }
        try FileManager.default.createDirectory(atPath: paths.run + "/agents", withIntermediateDirectories: true)
        // ZUMASTOR_EXE, else this program or the one beside ddsnap, else on PATH.
        guard let path = Executables.find("zumastor", variable: "ZUMASTOR_EXE", besides: ddsnapPath) else {
            throw ZumastorError.failed("cannot find the zumastor executable to run the schedule of \(name)")
        }
        let pid: pid_t
        do {
            pid = try system.spawnDetached(path, ["agent", name])
        } catch {
            throw ZumastorError.failed("cannot start the schedule agent of \(name): \(error)")
        }
        for _ in 0..<100 {
            if agentPID(name) != nil { break }
            if system.exited(pid) {
                throw ZumastorError.failed("the schedule agent of \(name) exited at once (see \(paths.logDirectory(name))/master.log)")
            }
            usleep(50_000)
        }
    }

    /// Stops the agent (SIGTERM) and waits for it; a snapshot under way completes first.
    func stopAgent(_ name: String) throws {
        guard let pid = agentPID(name) else { return }
        _ = system.signal(pid, SIGTERM)
        for _ in 0..<1200 {
            if agentPID(name) == nil { return }
            usleep(50_000)
        }
        throw ZumastorError.failed("the schedule agent of \(name) (pid \(pid)) did not stop within 60 s")
    }

    /// The agent's life (`zumastor agent VOL`); returns when it is told to stop or the volume
    /// stops being a running master.
    public func runAgent(_ name: String, clock: ScheduleClock = .fromEnvironment()) throws {
        var signals = sigset_t()
        sigemptyset(&signals)
        for s in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, s) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        let log = try makeVolumeLogger(program: "zumastor", volume: name, path: paths.logDirectory(name) + "/master.log",
                                       toStandardError: false)
        try FileManager.default.createDirectory(atPath: paths.run + "/agents", withIntermediateDirectories: true)
        let fd = open(agentPIDFile(name), O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0, flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            log.error("another schedule agent runs for this volume")
            throw ZumastorError.failed("a schedule agent already runs for \(name)")
        }
        defer { unlink(agentPIDFile(name)); close(fd) }
        ftruncate(fd, 0)
        let text = Array("\(getpid())\n".utf8)
        _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        log.info("schedule agent started")
        var due: [String: Int] = [:]
        var warned = false
        while true {
            guard let c = try? config(name), c.master || (c.source != nil && !c.schedule.isEmpty) else {
                log.info("the volume is no longer a master or a replica with a schedule; schedule agent stops")
                return
            }
            let now = Int(time(nil))
            let kinds = c.schedule.map(\.kind).filter { SnapshotKind.automatic.contains($0) }
            due = due.filter { kinds.contains($0.key) }
            for kind in kinds where due[kind] == nil { due[kind] = clock.nextDue(kind, after: now) }
            let firing = due.filter { $0.value <= now }.map(\.key).sorted { SnapshotKind.automatic.firstIndex(of: $0)! < SnapshotKind.automatic.firstIndex(of: $1)! }
            if !firing.isEmpty {
                takeScheduled(name, kinds: firing, replica: c.source != nil, log: log)
                let after = Int(time(nil))
                for kind in firing { due[kind] = clock.nextDue(kind, after: max(after, now)) }
            }
            warned = warnFill(name, c, warned: warned, log: log)
            if let client = server(name) { try? withVolumeLock(name) { _ = releaseSquashed(c, client) } }
            // At least every 10 s: a snapshot squashed when the store filled is unmounted soon.
            let next = due.values.min().map { $0 - Int(time(nil)) } ?? 10
            var timeout = timespec(tv_sec: max(0, min(next, 10)), tv_nsec: next <= 0 ? 0 : 1_000_000)
            let signal = sigtimedwait(&signals, nil, &timeout)
            if signal == SIGTERM || signal == SIGINT {
                log.info("schedule agent stops (signal \(signal))")
                return
            }
            if signal == SIGHUP { log.info("schedule re-read") }
        }
    }

    /// Takes the snapshot of the kinds due; snapshot() logs what it did.
    private func takeScheduled(_ name: String, kinds: [String], replica: Bool, log: Logger) {
        do {
            // A replica keeps a received snapshot instead of taking one of its origin.
            if replica { try retain(name, kinds: kinds) } else { _ = try snapshot(name, kinds: kinds) }
        } catch {
            log.error("scheduled \(kinds.joined(separator: "+")) snapshot failed: \(error)")
        }
    }

    /// Logs a warning when the store reaches the fill level (once per crossing).
    private func warnFill(_ name: String, _ c: VolumeConfig, warned: Bool, log: Logger) -> Bool {
        guard let status = try? server(name)?.status() else { return warned }
        let full = status.percentUsed >= c.warnFillPercent
        if full && !warned {
            log.warning("the snapshot store is \(status.percentUsed)% full (warning level \(c.warnFillPercent)%); when it fills, the oldest unused snapshots are deleted")
        }
        return full
    }
}
