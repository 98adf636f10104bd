// What `define master --export` publishes over NFS, and the two forms it takes: export blocks
// for nfs-ganesha and lines for the kernel's exports file. Per volume: the origin's mount point
// (read-write), the snapshot directory (read-only, with its KIND.N links) and each mounted
// snapshot below it (read-only, an export of its own: a snapshot is a filesystem of its own,
// which neither server crosses into from the directory above). Each path keeps one id while
// it exists (the export id and the fsid in NFS file handles), so handles survive a restart, a
// remount and rotation.

import Foundation

/// One directory published over NFS.
public struct NFSExport: Equatable, Sendable {
    public var volume: String
    public var path: String
    public var readOnly: Bool
    /// nfs-ganesha's Export_Id and the fsid of both servers; fixed while `path` exists.
    public var id: UInt16
    /// Who may mount it: `*`, host names, addresses or networks (CIDR).
    public var clients: [String]
}

/// Which NFS server publishes a volume's exports.
public enum NFSServerChoice: String, Codable, CaseIterable, Sendable {
    /// The kernel's where it runs (`/proc/fs/nfsd` and `exportfs`), else nfs-ganesha.
    case auto
    case kernel
    case ganesha
}

enum NFSExportText {
    /// The paths the text of either server (as written here) exports for `volume`.
    static func exportedPaths(_ text: String, volume: String) -> [String] {
        var paths: [String] = []
        var current: String?
        for raw in text.split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("# ") { current = String(line.dropFirst(2)); continue }
            guard current == volume else { continue }
            if line.hasPrefix("Pseudo = \""), line.hasSuffix("\";") {
                paths.append(String(line.dropFirst(10).dropLast(2)))
            } else if line.hasPrefix("/"), let path = line.split(separator: " ").first {
                paths.append(String(path))
                current = nil
            }
        }
        return paths
    }

    /// Characters a path may hold to be written into either server's configuration.
    static func checkPath(_ path: String) throws {
        guard path.hasPrefix("/"), !path.contains(where: { $0 == "\"" || $0 == "\\" || $0 == ";" || $0 == "#" || $0.isWhitespace || $0.asciiValue.map { $0 < 32 } ?? false }) else {
            throw ZumastorError.invalid("cannot export \(path) over NFS: the path holds a space, a quote or one of \\ ; # (choose another mount point or snapshot path)")
        }
    }

    /// The client list of `--nfs-clients`: comma-separated `*`, names, addresses or networks.
    static func parseClients(_ text: String) throws -> [String] {
        let clients = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:/*[]")
        guard !clients.isEmpty, clients.allSatisfy({ !$0.isEmpty && $0.allSatisfy { allowed.contains($0) } }) else {
            throw ZumastorError.invalid("--nfs-clients takes a comma-separated list of *, host names, addresses or networks such as 192.0.2.0/24 (got '\(text)')")
        }
        return clients
    }

    /// nfs-ganesha's EXPORT blocks: NFSv4 only, pseudo path = real path (the paths of the
    /// seed's mount commands), root squashed (no root trust between hosts), VFS.
    static func ganesha(_ exports: [NFSExport]) -> String {
        var text = "# Written by zumastor (define master --export) each time its NFS exports change; do not edit.\n"
        for e in exports {
            text += """
                EXPORT {
                    # \(e.volume)
                    Export_Id = \(e.id);
                    Path = "\(e.path)";
                    Pseudo = "\(e.path)";
                    Protocols = 4;
                    SecType = sys;
                    Squash = Root_Squash;
                    Filesystem_id = \(e.id).0;
                    # The master writes too, and rotation relinks: no stale attributes or names.
                    Attr_Expiration_Time = 0;
                    Access_Type = None;
                    CLIENT { Clients = \(e.clients.joined(separator: ", ")); Access_Type = \(e.readOnly ? "RO" : "RW"); Protocols = 4; }
                    FSAL { Name = VFS; }
                }

                """
        }
        return text
    }

    /// Lines of the kernel server's exports file (exports(5)).
    static func kernel(_ exports: [NFSExport]) -> String {
        var text = "# Written by zumastor (define master --export) each time its NFS exports change; do not edit.\n"
        for e in exports {
            let options = "\(e.readOnly ? "ro" : "rw"),fsid=\(e.id),nohide,no_subtree_check,root_squash,sec=sys"
            text += "# \(e.volume)\n" + e.path + " " + e.clients.map { "\($0)(\(options))" }.joined(separator: " ") + "\n"
        }
        return text
    }
}

/// The ids of exported paths (/var/lib/zumastor/nfs-export-ids.json): kept while the path
/// exists, given round from 1000 up so that a freed id is not soon given to another path.
struct NFSExportIDs: Codable {
    static let first: UInt16 = 1000
    var ids: [String: UInt16] = [:]
    var last: UInt16 = first - 1

    static func load(_ path: String) -> NFSExportIDs {
        guard let data = FileManager.default.contents(atPath: path),
              let registry = try? JSONDecoder().decode(NFSExportIDs.self, from: data) else { return NFSExportIDs() }
        return registry
    }

    func save(_ path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(self), to: path, mode: 0o600)
    }

    /// Drops the ids of paths that are no longer directories.
    mutating func forgetVanished() {
        ids = ids.filter { path, _ in
            var directory: ObjCBool = false
            return FileManager.default.fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
        }
    }

    /// The id of `path`, given now if it has none.
    mutating func id(_ path: String) throws -> UInt16 {
        if let id = ids[path] { return id }
        let used = Set(ids.values)
        var candidate = last
        for _ in 0..<(Int(UInt16.max) - Int(Self.first) + 1) {
            candidate = candidate >= UInt16.max || candidate < Self.first ? Self.first : candidate + 1
            if !used.contains(candidate) {
                ids[path] = candidate
                last = candidate
                return candidate
            }
        }
        throw ZumastorError.failed("no NFS export id is free (\(used.count) in use)")
    }
}
