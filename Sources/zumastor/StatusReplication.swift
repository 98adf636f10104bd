// What `zumastor status` shows of a volume's replication between hosts: per target and per
// source, the peer and its key, the period, the last snapshot replicated and when it was
// taken, the lag, the last error, and a transfer under way (done, total, rate, ETA).

import Foundation
import VolumeManager

extension Status {
    func replicationLines(_ s: VolumeStatus) -> [(String, String)] {
        var lines: [(String, String)] = []
        for (t, state) in s.targets {
            lines.append(("target", "\(t.endpoint)\(t.remoteName.map { " (volume \($0))" } ?? ""), key \(t.key)"))
            lines.append(("  cycles", (t.period.map { "every \($0) s" + (t.started ? "" : " (stopped: zumastor start target \(s.config.name) \(t.host))") } ?? "by hand")
                + (t.rateBytesPerSecond.map { ", at most \(formatBytes($0))/s" } ?? "") + ", \(t.compression == "none" ? "uncompressed" : t.compression)"))
            lines += stateLines(state, holding: state.held, s)
        }
        if let source = s.config.source, let state = s.sourceState {
            lines.append(("source", "\(source.endpoint)\(source.remoteName.map { " (volume \($0))" } ?? ""), key \(source.key)"))
            lines.append(("  cycles", source.period.map { "every \($0) s" + (source.started ? "" : " (not started: zumastor start source \(s.config.name))") } ?? "by hand"))
            lines += stateLines(state, holding: nil, s)
        }
        if !(s.targets.isEmpty && s.config.source == nil) {
            lines.append(("replication", s.replicatorPID.map { "service running (pid \($0))" } ?? "service not running (zumastor start)"))
        }
        return lines
    }

    private func stateLines(_ state: LinkState, holding: UInt64?, _ s: VolumeStatus) -> [(String, String)] {
        var lines: [(String, String)] = []
        let now = Int(time(nil))
        if let tag = state.lastSnapshot, let created = state.lastSnapshotCreatedNanoseconds {
            lines.append(("  last", "snapshot \(tag), taken \(formatDate(created)), replicated \(state.lastSuccess.map { formatDate(UInt64($0) * 1_000_000_000) } ?? "?")"
                + (state.lastResumedAt.map { " (resumed at chunk \($0))" } ?? "")))
            lines.append(("  lag", "\(max(0, now - Int(created / 1_000_000_000))) s"))
        } else {
            lines.append(("  last", "nothing replicated yet"))
        }
        if let h = holding {
            let pinned = s.usage[h].map { u in ", pinning \(formatBytes(u.uniqueChunks * UInt64(s.store?.chunkSizeBytes ?? 0))) of the store" } ?? ""
            lines.append(("  holds", "snapshot \(h) (the base of the next delta\(pinned))"))
        }
        if let r = state.resume { lines.append(("  interrupted", "snapshot \(r.target) at chunk \(r.nextChunk): the next cycle resumes there")) }
        if let p = state.progress, p.pid.map({ kill($0, 0) == 0 }) ?? false {
            lines.append(("  transfer", "\(p.chunksDone)/\(p.chunksTotal) chunks, \(formatBytes(p.bytes)) sent, \(formatBytes(UInt64(p.rate)))/s"
                + (p.secondsLeft.map { ", ETA \($0 / 60):\(String(format: "%02d", $0 % 60))" } ?? "")))
        }
        if let e = state.lastError, (state.lastAttempt ?? 0) >= (state.lastSuccess ?? 0) {
            lines.append(("  last error", "\(state.lastAttempt.map { formatDate(UInt64($0) * 1_000_000_000) } ?? ""): \(e)"))
        }
        return lines
    }

    func targetObject(_ t: ReplicationTarget, _ state: LinkState) -> [String: Any] {
        var o = peerObject(state, host: t.host, port: t.port, key: t.key, volume: t.remoteName, period: t.period, started: t.started)
        o["rateBytesPerSecond"] = t.rateBytesPerSecond ?? NSNull()
        o["compression"] = t.compression
        o["held"] = state.held ?? NSNull()
        o["sending"] = state.sending ?? NSNull()
        return o
    }

    func sourceObject(_ s: ReplicationSource, _ state: LinkState) -> [String: Any] {
        var o = peerObject(state, host: s.host, port: s.port, key: s.key, volume: s.remoteName, period: s.period, started: s.started)
        o["mountSnap"] = s.mountSnap
        o["resume"] = state.resume.map { ["snapshot": $0.target, "chunk": $0.nextChunk] as [String: Any] } ?? NSNull()
        return o
    }

    private func peerObject(_ state: LinkState, host: String, port: Int, key: String, volume: String?, period: Int?, started: Bool) -> [String: Any] {
        var o = stateObject(state)
        (o["host"], o["port"], o["key"], o["started"]) = (host, port, key, started)
        o["volume"] = volume ?? NSNull()
        o["period"] = period ?? NSNull()
        return o
    }

    private func stateObject(_ state: LinkState) -> [String: Any] {
        var o: [String: Any] = [:]
        o["lastSnapshot"] = state.lastSnapshot ?? NSNull()
        o["lastSuccess"] = state.lastSuccess ?? NSNull()
        o["lastAttempt"] = state.lastAttempt ?? NSNull()
        o["lastError"] = state.lastError ?? NSNull()
        o["lastResumedAt"] = state.lastResumedAt ?? NSNull()
        o["lagSeconds"] = state.lastSnapshotCreatedNanoseconds.map { max(0, Int(time(nil)) - Int($0 / 1_000_000_000)) } ?? NSNull()
        if let p = state.progress, p.pid.map({ kill($0, 0) == 0 }) ?? false {
            o["transfer"] = ["chunksDone": p.chunksDone, "chunksTotal": p.chunksTotal, "bytes": p.bytes, "bytesPerSecond": Int(p.rate),
                             "secondsLeft": p.secondsLeft ?? -1] as [String: Any]
        }
        return o
    }
}
