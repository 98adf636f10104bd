// Mounting, through mount(8) and umount(8), and the filesystem freeze around a snapshot.

import CSupport
import Foundation
import VolumeServer

enum Mounts {
    /// The filesystem type on `device` ("ext4", "xfs", ...), nil when none is recognized.
    static func filesystemType(_ device: String) -> String? {
        guard let (status, text) = try? Subprocess.run("blkid", ["-p", "-o", "value", "-s", "TYPE", device]), status == 0 else { return nil }
        let type = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return type.isEmpty ? nil : type
    }

    /// Read-only options for a snapshot of a mounted filesystem: it was frozen, not unmounted,
    /// so its journal must not be replayed, and xfs must accept the origin's UUID twice.
    static func snapshotOptions(_ type: String?) -> String {
        switch type {
        case "ext3", "ext4": return "ro,noload"
        case "xfs": return "ro,nouuid,norecovery"
        default: return "ro"
        }
    }

    static func mount(_ device: String, at directory: String, options: String?, type: String? = nil) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        // As given, not resolved: df and /proc/mounts then name /dev/mapper/<vol>(<id>).
        var arguments = ["--no-canonicalize", device, directory]
        if let options { arguments = ["-o", options] + arguments }
        if let type { arguments = ["-t", type] + arguments }
        let (status, text) = try Subprocess.run("mount", arguments)
        guard status == 0 else {
            throw ZumastorError.failed("cannot mount \(device) at \(directory): \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// Makes `source` a shared mount (bound onto itself when it is a plain directory) and binds
    /// it with everything mounted below it at `directory`: later mounts and unmounts below
    /// `source` happen below `directory` too.
    static func bindTree(_ source: String, at directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        func run(_ arguments: [String]) throws {
            let (status, text) = try Subprocess.run("mount", arguments)
            guard status == 0 else {
                throw ZumastorError.failed("cannot bind \(source) at \(directory): \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
        }
        // (By the mount table: a bind of a directory onto itself keeps its device number.)
        if !mountPoints(under: source).contains(source) { try run(["--bind", source, source]) }
        try run(["--make-shared", source])
        try run(["--rbind", source, directory])
    }

    /// Processes other than this one whose working directory, root or an open file lies at
    /// or below one of `directories` (what would make their unmount fail), as
    /// "pid N (command): PATH", at most `limit` of them.
    static func users(of directories: [String], limit: Int = 3) -> [String] {
        let roots = directories.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        func inside(_ path: String) -> Bool { roots.contains { path == $0 || path.hasPrefix($0 + "/") } }
        func link(_ path: String) -> String? { try? FileManager.default.destinationOfSymbolicLink(atPath: path) }
        var found: [String] = []
        let me = getpid()
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), pid != me, found.count < limit else { continue }
            let base = "/proc/\(entry)"
            var hits = [link(base + "/cwd"), link(base + "/root")].compactMap { $0 }.filter { $0 != "/" }.filter(inside)
            if hits.isEmpty {
                for fd in (try? FileManager.default.contentsOfDirectory(atPath: base + "/fd")) ?? [] {
                    if let target = link(base + "/fd/" + fd), inside(target) { hits.append(target); break }
                }
            }
            guard let hit = hits.first else { continue }
            let command = (try? String(contentsOfFile: base + "/comm", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            found.append("pid \(pid) (\(command)): \(hit)")
        }
        return found
    }

    /// Whether two paths lie on the same mounted filesystem.
    static func sameFilesystem(_ a: String, _ b: String) -> Bool {
        var sa = stat(), sb = stat()
        return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev
    }

    /// Unmounts `directory` if something is mounted there (by the mount table too: a bind of
    /// a directory onto itself keeps its device number).
    static func unmount(_ directory: String, lazilyIfBusy: Bool = false) throws {
        guard isMountPoint(directory) || mountPoints(under: directory).contains(directory) else { return }
        let (status, text) = try Subprocess.run("umount", [directory])
        if status != 0 && lazilyIfBusy, (try? Subprocess.run("umount", ["-l", directory]))?.0 == 0 { return }
        guard status == 0 else {
            throw ZumastorError.failed("cannot unmount \(directory) (files open there? see lsof \(directory)): \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }

    /// Runs `body` with the filesystem at `mountPoint` frozen (FIFREEZE: flushed, new writes
    /// held), then thaws it. Termination signals wait until the thaw, so the filesystem is
    /// never left frozen by an interrupted command. A filesystem that cannot freeze is synced.
    static func whileFrozen<T>(_ mountPoint: String?, expedite: Bool = true, _ body: () throws -> T) throws -> T {
        guard let mountPoint, isMountPoint(mountPoint) else { return try body() }
        var blocked = sigset_t()
        var previous = sigset_t()
        sigemptyset(&blocked)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] { sigaddset(&blocked, s) }
        pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        var thaw = false
        // errno is taken inside: restoring the RCU setting afterwards may change it.
        let (frozen, e) = RCUExpedite.during(expedite) { (zuma_freeze(mountPoint), errno) }
        if frozen == 0 {
            thaw = true
        } else {
            switch e {
            case EBUSY: break // frozen already (fsfreeze by the administrator): it stays frozen
            case EOPNOTSUPP, ENOTTY, EINVAL: sync()
            default: throw ZumastorError.failed("cannot freeze \(mountPoint): \(String(cString: strerror(e)))")
            }
        }
        defer {
            if thaw && zuma_thaw(mountPoint) != 0 {
                FileHandle.standardError.write(Data("zumastor: warning: cannot thaw \(mountPoint): \(String(cString: strerror(errno))) (fsfreeze -u \(mountPoint))\n".utf8))
            }
        }
        return try body()
    }
}

extension Mounts {
    /// Mount points at or below `directory` (this process's mount namespace), deepest first.
    static func mountPoints(under directory: String) -> [String] {
        let text = readProcFile("/proc/self/mountinfo")
        let prefix = directory.hasSuffix("/") ? directory : directory + "/"
        let points = text.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            let point = unescape(String(fields[4]))
            return point == directory || point.hasPrefix(prefix) ? point : nil
        }
        return Array(Set(points)).sorted { $0.count > $1.count }
    }

    /// mountinfo writes space, tab, newline and backslash as \ooo.
    private static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = []
        var input = Array(field.utf8)[...]
        while let b = input.popFirst() {
            if b == UInt8(ascii: "\\"), input.count >= 3, let v = UInt8(String(decoding: input.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(v)
                input = input.dropFirst(3)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
