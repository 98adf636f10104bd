import ArgumentParser
import Foundation
import SnapStore
import VolumeManager
import VolumeServer

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the defined volumes (one line each), one volume, or one snapshot of it.",
        discussion: """
            Without a volume: one line per volume (state, role, sizes, store fill, snapshots, the \
            newest and its age, replication lag), then what needs a look, such as a last operation \
            that failed and the log that tells why. --usage shows every volume in full instead.
            """)

    @Argument(help: "A volume (default: all).") var volume: String?
    @Argument(help: "A snapshot id of VOL.") var snap: UInt64?
    @Flag(name: [.customShort("u"), .long], help: "Every volume in full, with each snapshot's unique and shared space (always so for one volume).") var usage = false
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Whether the service runs: every defined volume's server (exit 3 when not, as init scripts do).")
    var service = false
    @Flag(help: "Show it again every --interval seconds, until interrupted.") var watch = false
    @Option(help: "Seconds between two views with --watch.") var interval = 2

    func validate() throws {
        if watch && (json || service) { throw ValidationError("--watch shows the text view: not with --json or --service") }
        guard (1...3600).contains(interval) else { throw ValidationError("--interval \(interval) must be 1 to 3600 seconds") }
    }

    func run() throws {
        let m = manager()
        if service { return try serviceStatus(m) }
        guard watch else {
            if try !show(m) { throw ExitCode(1) }
            return
        }
        let terminal = isatty(1) == 1
        while true {
            // A terminal is cleared; a pipe or file gets the views one after another.
            print(terminal ? "\u{1B}[H\u{1B}[2J" + "Every \(interval) s: zumastor status    \(formatDate(UInt64(time(nil)) * 1_000_000_000))\n"
                           : "--- \(formatDate(UInt64(time(nil)) * 1_000_000_000))")
            _ = try show(m)
            fflush(nil)
            sleep(UInt32(interval))
        }
    }

    /// Prints the view once; false when some volume's configuration is damaged.
    private func show(_ m: VolumeManager) throws -> Bool {
        let names = try volume.map { _ = try m.config($0); return [$0] } ?? m.definedVolumes()
        // Every volume that can be read is shown; one whose configuration is damaged is named,
        // with what is wrong, and the exit status is 1.
        var statuses: [VolumeStatus] = []
        var broken: [(name: String, error: String)] = []
        for name in names {
            do { statuses.append(try m.status(name, usage: withUsage)) } catch let e as ZumastorError where volume == nil {
                guard case .config = e else { throw e }
                broken.append((name, "\(e)"))
            }
        }
        if let snap {
            let s = statuses[0]
            guard let found = s.snapshots.first(where: { $0.tag == snap }) else {
                throw s.server == nil ? ZumastorError.failed("volume '\(s.config.name)' is not running (zumastor start)") : StoreError.snapshotMissing(snap)
            }
            if json {
                printJSON(snapshotObject(m, s, found))
            } else {
                for (key, value) in snapshotLines(m, s, found) { print("\((key + ":").padding(toLength: 16, withPad: " ", startingAt: 0))\(value)") }
            }
            return true
        }
        if json {
            let objects = statuses.map { volumeObject(m, $0) } + broken.map { ["name": $0.name, "error": $0.error] as [String: Any] }
            printJSON(volume == nil ? objects as Any : objects[0] as Any)
            return broken.isEmpty
        }
        if statuses.isEmpty && broken.isEmpty {
            print("No volumes defined.")
        } else if volume == nil && !usage {
            printSummary(m, statuses, broken: broken, now: Int(time(nil)))
        } else {
            for s in statuses { printVolume(m, s) }
            for b in broken { print("Volume \(b.name): CONFIGURATION DAMAGED: \(b.error)\n") }
        }
        return broken.isEmpty
    }

    private func serviceStatus(_ m: VolumeManager) throws {
        let names = m.definedVolumes()
        let stopped = names.filter { m.server($0) == nil }
        if names.isEmpty {
            print("zumastor is running (no volumes defined)")
        } else if stopped.isEmpty {
            print("zumastor is running (\(names.count) volume(s))")
        } else {
            print("zumastor is \(stopped.count == names.count ? "not running" : "partly running"): \(stopped.joined(separator: ", ")) stopped")
        }
        print("use 'zumastor status' for more info...")
        if !stopped.isEmpty { throw ExitCode(3) }
    }

    /// One volume: with each snapshot's unique and shared space; all volumes: with --usage.
    private var withUsage: Bool { usage || volume != nil }

    private func printVolume(_ m: VolumeManager, _ s: VolumeStatus) {
        let c = s.config
        func line(_ key: String, _ value: String) { print("  \((key + ":").padding(toLength: 16, withPad: " ", startingAt: 0))\(value)") }
        print("Volume \(c.name): \(s.server.map { "running (server pid \($0.processID))" } ?? "stopped (zumastor start volume \(c.name))")")
        line("origin", c.origin)
        line("snapshot store", c.store)
        if c.master {
            let mounted = isMountPoint(m.mountPoint(c))
            line("role", "master, origin \(mounted ? "mounted at" : "not mounted (zumastor start master \(c.name)); mounts at") \(m.mountPoint(c))")
            let options = [c.snapmount ? nil : "no-snapmount", c.export ? "export" : nil, c.samba ? "samba" : nil, c.dotsnapshot ? "dotsnapshot" : nil, c.expediteFreeze ? nil : "no-expedite"].compactMap { $0 }
            if !options.isEmpty { line("options", options.joined(separator: ", ")) }
            line("schedule", c.schedule.isEmpty ? "none (manual snapshots only)" : c.schedule.map { "\($0.kind) \($0.keep)" }.joined(separator: ", ")
                 + (s.agentPID.map { " (agent pid \($0))" } ?? (s.server == nil ? "" : " (agent not running)")))
            if c.snapmount { line("snapshots in", m.snapshotDirectory(c)) }
            for (key, value) in exportLines(m, c) { line(key, value) }
            for (target, tag) in c.replicated.sorted(by: { $0.key < $1.key }) { line("replicated to", "\(target) (snapshot \(tag))") }
        } else if let source = c.source {
            line("role", "replica of \(source.remoteName ?? c.name) on \(source.endpoint), newest snapshot at \(m.mountPoint(c))")
            for (key, value) in exportLines(m, c) { line(key, value) }
        } else {
            line("role", "none (zumastor define master \(c.name) mounts it)")
        }
        for (key, value) in replicationLines(s) { line(key, value) }
        if let f = m.lastFailure(c.name) { line("last failure", "\(logMessage(f.line)) (see \(f.log))") }
        for d in s.devices { line("device", "\(d.name) -> \(d.loopDevice)\(d.writable ? "" : " (read-only)")") }
        if let st = s.store {
            line("store usage", "\(st.percentUsed)% of \(formatBytes(st.storeChunks * UInt64(st.chunkSizeBytes))) (\(formatBytes(st.usedChunks * UInt64(st.chunkSizeBytes))) used), \(st.snapshotCount) snapshot(s)\(st.squashedCount > 0 ? ", \(st.squashedCount) squashed" : "")")
            if s.nearlyFull {
                line("warning", "the snapshot store is \(st.percentUsed)% full (warning level \(c.warnFillPercent)%); when it fills, unused snapshots are deleted oldest first and mounted ones squashed")
            }
            if st.squashedCount > 0 {
                line("squashed", s.snapshots.filter { $0.info.squashed }.map { String($0.tag) }.joined(separator: ", ") + " (their data was given up when the store filled; they read as errors)")
            }
        }
        guard !s.snapshots.isEmpty else { return }
        print("  snapshots:")
        var rows = [["ID", "CREATED", "KINDS", "SIZE"] + (withUsage ? ["UNIQUE", "SHARED"] : []) + ["MOUNTED AT"]]
        for snap in s.snapshots {
            let u = s.usage[snap.tag]
            let chunk = UInt64(s.store?.chunkSizeBytes ?? 0)
            rows.append([String(snap.tag), formatDate(snap.info.createdNanoseconds),
                         snap.label == nil ? "(ddsnap)" : snap.kinds.isEmpty ? "manual" : snap.kinds.joined(separator: ","),
                         formatBytes(snap.info.originSizeBytes)]
                        + (withUsage ? [u.map { formatBytes($0.uniqueChunks * chunk) } ?? "-", u.map { formatBytes($0.sharedChunks * chunk) } ?? "-"] : [])
                        + [snap.info.squashed ? "(squashed)" : mounted(m, c, snap) ?? "-"])
        }
        let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
        for r in rows {
            print("    " + r.enumerated().map { i, cell in i == r.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  "))
        }
        let links = links(m, c)
        if !links.isEmpty {
            print("  links:")
            for (name, target) in links { print("    \(name) -> \(target)") }
        }
    }

    private func snapshotLines(_ m: VolumeManager, _ s: VolumeStatus, _ snap: VolumeSnapshot) -> [(String, String)] {
        let chunk = UInt64(s.store?.chunkSizeBytes ?? 0)
        var lines: [(String, String)] = [
            ("snapshot", "\(snap.tag) of \(s.config.name)"), ("created", formatDate(snap.info.createdNanoseconds)),
            ("kinds", snap.label == nil ? "(taken with ddsnap)" : snap.kinds.isEmpty ? "manual" : snap.kinds.joined(separator: ", ")),
            ("size", formatBytes(snap.info.originSizeBytes)), ("state", snap.info.squashed ? "squashed" : "normal"),
            ("mounted at", mounted(m, s.config, snap) ?? "-"),
        ]
        if let d = s.devices.first(where: { $0.tag == snap.tag }) { lines.append(("device", "\(d.name) -> \(d.loopDevice)")) }
        if let u = s.usage[snap.tag] {
            lines.append(("unique", formatBytes(u.uniqueChunks * chunk) + " (freed if deleted)"))
            lines.append(("shared", formatBytes(u.sharedChunks * chunk)))
        }
        return lines
    }

    /// The directory snapshot `snap` is mounted at now, if it is.
    private func mounted(_ m: VolumeManager, _ c: VolumeConfig, _ snap: VolumeSnapshot) -> String? {
        // A replica's received snapshot is mounted under its views directory.
        let view = c.source.map { _ in m.paths.replicaViews(c.name) + "/\(snap.tag)" }
        return (m.mountDirectory(c, snap) ?? view).flatMap { isMountPoint($0) ? $0 : nil }
    }

    private func links(_ m: VolumeManager, _ c: VolumeConfig) -> [(String, String)] {
        let dir = m.snapshotDirectory(c)
        guard c.master, c.snapmount, let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        func key(_ link: String) -> (String, Int) {
            let dot = link.lastIndex(of: ".") ?? link.endIndex
            return (String(link[..<dot]), Int(link[link.index(dot, offsetBy: dot == link.endIndex ? 0 : 1)...]) ?? 0)
        }
        let links: [(String, String)] = entries.compactMap { e in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + e)).map { (e, $0) }
        }
        return links.sorted { key($0.0) < key($1.0) }
    }

    /// The nfs and samba lines of a volume defined with --export or --samba.
    private func exportLines(_ m: VolumeManager, _ c: VolumeConfig) -> [(String, String)] {
        let exports = m.exportStatus(c)
        var lines: [(String, String)] = []
        let role = c.master ? "the master" : "the volume"
        if let server = exports.nfsServer {
            lines.append(("nfs", exports.nfsExports.isEmpty ? "not exported (\(role) is not running)"
                          : "\(exports.nfsExports.count) exports through \(server)\(exports.nfsPID.map { " (pid \($0))" } ?? "") to \(exports.nfsClients.joined(separator: ", "))"))
        }
        if let share = exports.sambaShare {
            lines.append(("samba", exports.sambaPublished ? "share [\(share)], snapshots as previous versions" : "share [\(share)] not published (\(role) is not running)"))
        }
        return lines
    }

    private func volumeObject(_ m: VolumeManager, _ s: VolumeStatus) -> [String: Any] {
        let c = s.config
        var o: [String: Any] = ["name": c.name, "origin": c.origin, "store": c.store, "running": s.server != nil,
                                "role": c.master ? "master" : "none", "warnFillPercent": c.warnFillPercent, "nearlyFull": s.nearlyFull]
        if c.master {
            o["mountPoint"] = m.mountPoint(c)
            o["mounted"] = isMountPoint(m.mountPoint(c))
            o["snapshotDirectory"] = m.snapshotDirectory(c)
            o["options"] = ["snapmount": c.snapmount, "export": c.export, "samba": c.samba, "dotsnapshot": c.dotsnapshot, "expediteFreeze": c.expediteFreeze]

            o["schedule"] = c.schedule.map { ["kind": $0.kind, "keep": $0.keep] as [String: Any] }
            o["links"] = Dictionary(uniqueKeysWithValues: links(m, c))
            if let pid = s.agentPID { o["agentPID"] = Int(pid) }
        }
        let exports = m.exportStatus(c)
        if let server = exports.nfsServer {
            var nfs: [String: Any] = ["server": server, "exports": exports.nfsExports, "clients": exports.nfsClients]
            if let pid = exports.nfsPID { nfs["pid"] = pid }
            o["nfs"] = nfs
        }
        if let share = exports.sambaShare { o["samba"] = ["share": share, "published": exports.sambaPublished] as [String: Any] }
        o["replicated"] = c.replicated.mapValues { Int($0) }
        if c.source != nil { o["role"] = "replica" }
        o["targets"] = s.targets.map { targetObject($0.target, $0.state) }
        if let source = c.source { o["source"] = sourceObject(source, s.sourceState ?? LinkState()) }
        if let pid = s.replicatorPID { o["replicatorPID"] = Int(pid) }
        if let server = s.server { o["serverPID"] = Int(server.processID) }
        o["devices"] = s.devices.map { ["name": $0.name, "loopDevice": $0.loopDevice, "writable": $0.writable, "snapshot": $0.tag.map { $0 as Any } ?? NSNull()] as [String: Any] }
        if let st = s.store {
            o["storeBytes"] = st.storeChunks * UInt64(st.chunkSizeBytes)
            o["usedBytes"] = st.usedChunks * UInt64(st.chunkSizeBytes)
            o["originBytes"] = st.originSizeBytes
            o["chunkBytes"] = st.chunkSizeBytes
            o["percentUsed"] = st.percentUsed
            o["snapshotCount"] = st.snapshotCount
            o["squashedCount"] = st.squashedCount
        }
        o["snapshots"] = s.snapshots.map { snapshotObject(m, s, $0) }
        return o
    }

    private func snapshotObject(_ m: VolumeManager, _ s: VolumeStatus, _ snap: VolumeSnapshot) -> [String: Any] {
        var o: [String: Any] = ["id": snap.tag, "kinds": snap.kinds, "managed": snap.label != nil,
                                "created": formatDate(snap.info.createdNanoseconds, iso: true),
                                "createdNanoseconds": snap.info.createdNanoseconds, "sizeBytes": snap.info.originSizeBytes,
                                "state": snap.info.squashed ? "squashed" : "normal", "mounted": mounted(m, s.config, snap) != nil]
        o["mountDirectory"] = m.mountDirectory(s.config, snap) ?? NSNull()
        if let d = s.devices.first(where: { $0.tag == snap.tag }) { o["device"] = d.name }
        if let u = s.usage[snap.tag], let chunk = s.store?.chunkSizeBytes {
            o["uniqueBytes"] = u.uniqueChunks * UInt64(chunk)
            o["sharedBytes"] = u.sharedChunks * UInt64(chunk)
        }
        return o
    }

    private func printJSON(_ value: Any) {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys]) else { return }
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}

/// "2026-11-24 10:00:00" (local), or ISO 8601 with the offset.
func formatDate(_ nanoseconds: UInt64, iso: Bool = false) -> String {
    var t = tm()
    var s = time_t(nanoseconds / 1_000_000_000)
    localtime_r(&s, &t)
    var buffer = [UInt8](repeating: 0, count: 64)
    let n = buffer.withUnsafeMutableBufferPointer { b in
        b.baseAddress!.withMemoryRebound(to: CChar.self, capacity: b.count) { strftime($0, b.count, iso ? "%Y-%m-%dT%H:%M:%S%z" : "%Y-%m-%d %H:%M:%S", &t) }
    }
    return String(decoding: buffer[0..<n], as: UTF8.self)
}

/// 1536 -> "1.5K" (powers of 1024).
func formatBytes(_ bytes: UInt64) -> String {
    let units = ["", "K", "M", "G", "T", "P"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
    if unit == 0 { return "\(bytes)" }
    return value >= 10 ? String(format: "%.0f%@", value, units[unit]) : String(format: "%.1f%@", value, units[unit])
}
