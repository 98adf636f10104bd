// The two NFS servers zumastor publishes through. The kernel's: its exports in
// /etc/exports.d/zumastor.exports, reloaded with `exportfs -ra`. nfs-ganesha (userspace, for
// hosts without the kernel's): zumastor runs its own instance, configured by
// /etc/zumastor/ganesha.conf (written once, the administrator's to edit: listener, NFS
// versions), which includes the export blocks zumastor rewrites in
// /var/run/zumastor/nfs/ganesha-exports.conf. A change is applied with SIGHUP, and zumastor
// waits until the server says it has re-read its exports, since a snapshot it still exports
// cannot be unmounted. The instance starts with the first export and stops after the last.

import Foundation

enum KernelNFS {
    /// Whether the kernel's NFS server runs here (its control filesystem and exportfs).
    static func available() -> Bool {
        FileManager.default.fileExists(atPath: "/proc/fs/nfsd/threads") && Executables.onPath("exportfs") != nil
    }

    /// Writes `exports` to `file` and has the server re-read them; returns what went wrong.
    static func publish(_ exports: [NFSExport], file: String) -> [String] {
        do {
            guard try AtomicFile.writeIfChanged(NFSExportText.kernel(exports), to: file) else { return [] }
        } catch {
            return ["cannot write \(file): \(error)"]
        }
        guard let (status, output) = try? Subprocess.run("exportfs", ["-ra"]) else {
            return ["cannot run exportfs (apt-get install nfs-kernel-server)"]
        }
        return status == 0 ? [] : ["exportfs -ra failed: \(output.trimmingCharacters(in: .whitespacesAndNewlines))"]
    }
}

struct GaneshaNFS {
    let paths: ZumastorPaths

    var mainConfig: String { paths.etc + "/ganesha.conf" }
    var exportsFile: String { paths.run + "/nfs/ganesha-exports.conf" }
    var pidFile: String { paths.run + "/nfs/ganesha.pid" }
    var logFile: String { paths.log + "/nfs-ganesha.log" }

    static func executable() -> String? { Executables.onPath("ganesha.nfsd") }

    /// The pid of the instance zumastor started, if it runs.
    func runningPID() -> pid_t? {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
              let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0, kill(pid, 0) == 0,
              let comm = try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8),
              comm.hasPrefix("ganesha"),
              // A zombie (it exited; the process that started it has not reaped it) does not run.
              let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")"), !stat[close...].hasPrefix(") Z") else { return nil }
        return pid
    }

    /// The configuration zumastor's instance reads; written when missing, never rewritten.
    func ensureMainConfig() throws {
        guard !FileManager.default.fileExists(atPath: mainConfig) else { return }
        let text = """
            # nfs-ganesha as zumastor runs it for volumes defined with --export. zumastor writes this
            # file once and never again: change the listener or the NFS versions here, then
            # restart the instance (zumastor stop and start, or kill -HUP the pid in \(pidFile)).
            NFS_CORE_PARAM {
                Protocols = 4;
                NFS_Port = 2049;
                Enable_NLM = false;
                Enable_RQUOTA = false;
                # Required: snapshots of a filesystem share its UUID, so nfs-ganesha tells them
                # apart by device number (zumastor keeps each volume's device numbers).
                fsid_device = true;
            }
            NFSV4 {
                # Snapshots are read-only and the origin is one filesystem: a short grace period
                # after a restart is enough for clients to reclaim their locks.
                Grace_Period = 15;
                Lease_Lifetime = 10;
            }
            %include "\(exportsFile)"

            """
        try AtomicFile.write(Data(text.utf8), to: mainConfig)
    }

    /// Makes the instance serve `exports` (starting it, reloading it, or stopping it when
    /// nothing is left); returns what went wrong.
    func publish(_ exports: [NFSExport], system: any VolumeSystem) -> [String] {
        do {
            let changed = try AtomicFile.writeIfChanged(NFSExportText.ganesha(exports), to: exportsFile)
            let running = runningPID()
            if exports.isEmpty {
                if let running { stop(running) }
                return []
            }
            if let running {
                if changed { try reload(running) }
            } else {
                try start(system: system)
            }
            return []
        } catch {
            return ["\(error)"]
        }
    }

    /// The log's size now: where what the instance logs next begins.
    private func logEnd() -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: logFile))?[.size] as? NSNumber)?.uint64Value ?? 0
    }

    /// What the instance logged from `offset` on (all of it when the log was replaced).
    private func logText(from offset: UInt64) -> String {
        guard let handle = FileHandle(forReadingAtPath: logFile) else { return "" }
        defer { try? handle.close() }
        let end = (try? handle.seekToEnd()) ?? 0
        try? handle.seek(toOffset: offset <= end ? offset : 0)
        return String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
    }

    /// The last lines from `offset` on that tell what went wrong.
    private func lastProblems(from offset: UInt64) -> String {
        let lines = logText(from: offset).split(separator: "\n").filter { $0.contains(":CRIT :") || $0.contains(":FATAL :") || $0.contains(":MAJ :") }
            .filter { !$0.contains("krb5") && !$0.contains("keytab") && !$0.contains("DBUS") && !$0.contains("credentials for principal") }
        return lines.suffix(2).map { String($0.split(separator: ":").suffix(2).joined(separator: ":")).trimmingCharacters(in: .whitespaces) }.joined(separator: "; ")
    }

    private func start(system: any VolumeSystem) throws {
        guard let ganesha = Self.executable() else {
            throw ZumastorError.failed("nfs-ganesha is not installed (apt-get install nfs-ganesha nfs-ganesha-vfs)")
        }
        try ensureMainConfig()
        try FileManager.default.createDirectory(atPath: paths.log, withIntermediateDirectories: true)
        let offset = logEnd()
        let pid = try system.spawnDetached(ganesha, ["-F", "-f", mainConfig, "-L", logFile, "-p", pidFile, "-N", "NIV_EVENT"])
        for _ in 0..<300 {
            if logText(from: offset).contains("NFS SERVER INITIALIZED") { return }
            if system.exited(pid) || kill(pid, 0) != 0 {
                let reason = lastProblems(from: offset)
                throw ZumastorError.failed("nfs-ganesha did not start\(reason.isEmpty ? "" : ": \(reason)") (see \(logFile))")
            }
            usleep(50_000)
        }
        stop(pid)
        throw ZumastorError.failed("nfs-ganesha did not start within 15 s (see \(logFile))")
    }

    /// SIGHUP, then waits until the instance has re-read its exports.
    private func reload(_ pid: pid_t) throws {
        let offset = logEnd()
        kill(pid, SIGHUP)
        for _ in 0..<300 {
            if logText(from: offset).contains("Reread exports complete") { return }
            usleep(50_000)
        }
        throw ZumastorError.failed("nfs-ganesha (pid \(pid)) did not re-read its exports within 15 s (see \(logFile))")
    }

    func stop(_ pid: pid_t) {
        kill(pid, SIGTERM)
        for _ in 0..<200 where kill(pid, 0) == 0 {
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)
            usleep(50_000)
        }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        unlink(pidFile)
    }
}
