// What `define master --samba` publishes: the origin as a Samba share whose snapshots are its
// previous versions (Windows' "Previous Versions" tab), through Samba's own shadow_copy2
// module reading the snapshot directory. The shares of all such volumes are written to
// /etc/zumastor/smb-shares.conf, which one `include =` line (added once) brings into smb.conf;
// smbd is told to reload. A share is listed only while its origin is mounted: clients never
// write into an empty mount point.

import Foundation

/// One volume's share.
public struct SambaShare: Equatable, Sendable {
    public var volume: String
    public var name: String
    public var path: String
    public var snapshotDirectory: String
}

enum SambaShares {
    /// Samba's section names that are not shares of their own.
    static let reserved: Set<String> = ["global", "homes", "printers", "print$", "ipc$"]

    static func checkName(_ name: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-$")
        guard !name.isEmpty, name.count <= 80, name.allSatisfy({ allowed.contains($0) }) else {
            throw ZumastorError.invalid("Samba share name '\(name)' must be 1 to 80 letters, digits, '.', '_', '-' or '$'")
        }
        guard !reserved.contains(name.lowercased()) else {
            throw ZumastorError.invalid("'\(name)' is one of Samba's own sections; choose another share name (--samba-share)")
        }
    }

    /// Whether smbd and its shadow_copy2 module are installed.
    static func installed() -> Bool {
        guard let smbd = Executables.onPath("smbd") else { return false }
        guard let (status, text) = try? Subprocess.run(smbd, ["-b"]), status == 0,
              let line = text.split(separator: "\n").first(where: { $0.contains("MODULESDIR:") }) else { return false }
        let directory = line.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces)
        return FileManager.default.fileExists(atPath: directory + "/vfs/shadow_copy2.so")
    }

    /// The share sections of `shares`: shadow_copy2 reads the snapshot directory, whose entries
    /// are named for their local time (KIND.N links and other names do not parse and are left out).
    static func text(_ shares: [SambaShare]) -> String {
        var text = "# Written by zumastor (define master --samba) each time its shares change; do not edit.\n"
        for s in shares {
            text += """
                [\(s.name)]
                    comment = zumastor volume \(s.volume)
                    path = \(s.path)
                    browseable = yes
                    read only = no
                    vfs objects = shadow_copy2
                    shadow:snapdir = \(s.snapshotDirectory)
                    shadow:basedir = \(s.path)
                    shadow:format = %Y.%m.%d-%H.%M.%S
                    shadow:localtime = yes
                    shadow:sort = desc

                """
        }
        return text
    }

    /// The section names of smb.conf (lower case), the ones from `ignoring` left out; files it
    /// includes are read too.
    static func sections(_ smbConf: String, ignoring: String) -> Set<String> {
        var names = Set<String>()
        var pending = [smbConf]
        var seen = Set<String>()
        while let file = pending.popLast() {
            guard file != ignoring, seen.insert(file).inserted,
                  let data = FileManager.default.contents(atPath: file) else { continue }
            for raw in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                let line = raw.trimmingCharacters(in: .whitespaces)
                if line.hasPrefix("["), let end = line.firstIndex(of: "]") {
                    names.insert(line[line.index(after: line.startIndex)..<end].trimmingCharacters(in: .whitespaces).lowercased())
                } else if line.lowercased().hasPrefix("include"), let eq = line.firstIndex(of: "=") {
                    let target = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
                    if target.hasPrefix("/") && !target.contains("%") { pending.append(target) }
                }
            }
        }
        return names
    }

    /// Adds `include = <shares>` to the end of smb.conf unless it is there.
    static func ensureInclude(_ smbConf: String, shares: String) throws {
        guard let data = FileManager.default.contents(atPath: smbConf) else {
            throw ZumastorError.failed("cannot read \(smbConf): \(String(cString: strerror(errno))) (is Samba installed?)")
        }
        let text = String(decoding: data, as: UTF8.self)
        let line = "include = \(shares)"
        if text.split(separator: "\n").contains(where: { $0.trimmingCharacters(in: .whitespaces) == line }) { return }
        let attributes = (try? FileManager.default.attributesOfItem(atPath: smbConf)) ?? [:]
        let mode = (attributes[.posixPermissions] as? NSNumber)?.uint16Value ?? 0o644
        let addition = (text.hasSuffix("\n") || text.isEmpty ? "" : "\n") + "\n# The shares of zumastor volumes (define master --samba).\n[global]\n" + line + "\n"
        try AtomicFile.write(Data((text + addition).utf8), to: smbConf, mode: mode_t(mode))
    }

    /// Has a running smbd (of `smbConf`) re-read its configuration and drop the clients of
    /// `closing` shares; nothing when smbd does not run (it reads the file when it starts).
    static func reload(_ smbConf: String, closing: [String]) -> [String] {
        guard let smbcontrol = Executables.onPath("smbcontrol") else { return [] }
        guard let (status, text) = try? Subprocess.run(smbcontrol, ["--configfile=\(smbConf)", "smbd", "reload-config"]) else { return [] }
        if status != 0 {
            // "Can't find pid for destination 'smbd'": it does not run.
            return text.contains("Can't find pid") || text.contains("No such file") ? [] : ["smbcontrol smbd reload-config failed: \(text.trimmingCharacters(in: .whitespacesAndNewlines))"]
        }
        for share in closing { _ = try? Subprocess.run(smbcontrol, ["--configfile=\(smbConf)", "smbd", "close-share", share]) }
        return []
    }
}
