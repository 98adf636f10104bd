// `zumastor status` for people: one line per volume, as `zfs list` and `zrepl status` read,
// with its state, role, sizes, store fill, snapshots, the newest one and its age, and each
// replication's lag; then a line for each volume that needs a look (its last operation
// failed: the log to read; its store nearly full; its configuration damaged).

import Foundation
import VolumeManager

extension Status {
    func printSummary(_ m: VolumeManager, _ statuses: [VolumeStatus], broken: [(name: String, error: String)], now: Int) {
        var rows = [["VOLUME", "STATE", "ROLE", "ORIGIN", "STORE", "USED", "SNAPS", "NEWEST", "REPLICATION"]]
        var notes: [String] = []
        for s in statuses {
            let c = s.config
            let chunk = UInt64(s.store?.chunkSizeBytes ?? 0)
            let newest = s.snapshots.filter { $0.label != nil }.max { $0.info.createdNanoseconds < $1.info.createdNanoseconds }
            rows.append([
                c.name,
                s.server == nil ? "stopped" : "running",
                c.master ? "master" : c.source != nil ? "replica" : "volume",
                s.store.map { formatBytes($0.originSizeBytes) } ?? "-",
                s.store.map { formatBytes($0.storeChunks * chunk) } ?? "-",
                s.store.map { "\($0.percentUsed)%" } ?? "-",
                s.store.map { String($0.snapshotCount) } ?? "-",
                newest.map { "\(formatAge(now - Int($0.info.createdNanoseconds / 1_000_000_000))) ago (\($0.kinds.isEmpty ? "manual" : $0.kinds.joined(separator: ",")))" } ?? "-",
                replicationSummary(s, now: now),
            ])
            if let f = m.lastFailure(c.name) {
                notes.append("\(c.name): the last operation failed: \(logMessage(f.line)) (see \(f.log))")
            }
            if s.nearlyFull, let st = s.store {
                notes.append("\(c.name): the snapshot store is \(st.percentUsed)% full (warning level \(c.warnFillPercent)%)")
            }
        }
        for b in broken {
            rows.append([b.name, "damaged", "-", "-", "-", "-", "-", "-", "-"])
            notes.append("\(b.name): CONFIGURATION DAMAGED: \(b.error)")
        }
        let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max() ?? 0 }
        for r in rows {
            print(r.enumerated().map { i, cell in i == r.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  "))
        }
        if !notes.isEmpty { print("") }
        for n in notes { print(n) }
    }

    /// "to HOST 2m behind", "from HOST never", joined; "-" without replication.
    private func replicationSummary(_ s: VolumeStatus, now: Int) -> String {
        func state(_ st: LinkState) -> String {
            let failing = st.lastError != nil && (st.lastAttempt ?? 0) >= (st.lastSuccess ?? 0)
            let lag = st.lastSnapshotCreatedNanoseconds.map { "\(formatAge(now - Int($0 / 1_000_000_000))) behind" } ?? "nothing yet"
            return lag + (failing ? ", failing" : "")
        }
        var parts = s.targets.map { "to \($0.target.endpoint) \(state($0.state))" }
        if let source = s.config.source { parts.append("from \(source.endpoint) \(state(s.sourceState ?? LinkState()))") }
        return parts.isEmpty ? "-" : parts.joined(separator: "; ")
    }

    /// A log line without its time, program, volume and level.
    func logMessage(_ line: String) -> String {
        guard let r = line.range(of: " error: ") ?? line.range(of: " critical: ") else { return line }
        return String(line[r.upperBound...])
    }
}

/// Seconds as people read them: 45s, 14m, 3h, 2d.
func formatAge(_ seconds: Int) -> String {
    let s = max(0, seconds)
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)m" }
    if s < 86400 { return "\(s / 3600)h" }
    return "\(s / 86400)d"
}
