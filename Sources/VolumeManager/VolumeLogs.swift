// A volume's logs, for status: which files they are, and whether the newest line among them
// reports an error (the last thing done to the volume failed), so that status can point at it.

import Foundation

extension VolumeManager {
    /// The volume's logs: its server's, its master's (snapshots, schedule, mounts) and its
    /// replication's, under /var/log/zumastor/VOL.
    public func logFiles(_ name: String) -> [String] {
        [paths.serverLog(name), paths.logDirectory(name) + "/master.log", paths.replicationLog(name)]
    }

    /// The newest line of the volume's logs, and its file, when it is an error. Lines begin
    /// with their local time, "YYYY-MM-DD HH:MM:SS.mmm", so the greatest is the newest.
    public func lastFailure(_ name: String) -> (line: String, log: String)? {
        var newest: (line: String, log: String)?
        for log in logFiles(name) {
            guard let line = lastLine(of: log) else { continue }
            if newest == nil || line > newest!.line { newest = (line, log) }
        }
        guard let n = newest, n.line.contains(" error: ") || n.line.contains(" critical: ") else { return nil }
        return n
    }

    /// The last whole line of `path` (read from its last 16 KiB).
    private func lastLine(of path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let size = try? handle.seekToEnd(), size > 0 else { return nil }
        try? handle.seek(toOffset: size > 16384 ? size - 16384 : 0)
        guard let data = try? handle.readToEnd() else { return nil }
        return String(decoding: data, as: UTF8.self).split(separator: "\n").last.map(String.init)
    }
}
