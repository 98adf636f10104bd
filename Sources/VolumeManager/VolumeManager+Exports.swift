// Publishing volumes to NFS and Samba clients. Each change rebuilds the whole list from the
// defined volumes and what is mounted, under one lock (/var/run/zumastor/nfs/lock): a
// volume's exports and share exist exactly while its master runs, and follow its snapshot
// mounts. Before anything of a volume is unmounted it is withdrawn (servers hold exported
// filesystems open). Exports are not in the data path: a failure is reported, and the volume
// stays mounted and snapshotting.

import Foundation

extension VolumeManager {
    var nfsExportIDsFile: String { paths.library + "/nfs-export-ids.json" }
    var kernelExportsFile: String { paths.root + "/etc/exports.d/zumastor.exports" }
    var smbConf: String { paths.root + "/etc/samba/smb.conf" }
    var sambaSharesFile: String { paths.etc + "/smb-shares.conf" }
    var ganesha: GaneshaNFS { GaneshaNFS(paths: paths) }

    /// The server `choice` means on this host, or an error telling what to install.
    func nfsServer(_ choice: NFSServerChoice) throws -> NFSServerChoice {
        switch choice {
        case .kernel:
            guard KernelNFS.available() else {
                throw ZumastorError.invalid("--nfs-server kernel: the kernel's NFS server does not run here (no /proc/fs/nfsd or exportfs; apt-get install nfs-kernel-server, or --nfs-server ganesha)")
            }
            return .kernel
        case .ganesha:
            guard GaneshaNFS.executable() != nil else {
                throw ZumastorError.invalid("--export needs nfs-ganesha (apt-get install nfs-ganesha nfs-ganesha-vfs)")
            }
            return .ganesha
        case .auto:
            if KernelNFS.available() { return .kernel }
            guard GaneshaNFS.executable() != nil else {
                throw ZumastorError.invalid("--export needs an NFS server: the kernel's does not run here and nfs-ganesha is not installed (apt-get install nfs-ganesha nfs-ganesha-vfs)")
            }
            return .ganesha
        }
    }

    /// What of a running master NFS clients see (path, read-only): the origin, the snapshot
    /// directory, and the snapshots mounted below it. (nfs-ganesha 4.3 can export neither a
    /// directory twice nor exports nested three deep, origin, .snapshot, a snapshot: it
    /// crashes when one is withdrawn; so `.snapshot` is not a way in for NFS clients.)
    /// A replica (--mount-snap) while it runs: the snapshot directory and its snapshots.
    private func publishedPaths(_ c: VolumeConfig) -> [(path: String, readOnly: Bool)]? {
        let directory = snapshotDirectory(c)
        let snapshots = { [(directory, true)] + self.system.mountPoints(under: directory).filter { $0 != directory }.sorted().map { ($0, true) } }
        if let source = c.source {
            guard source.mountSnap, FileManager.default.fileExists(atPath: paths.serverSocket(c.name)) else { return nil }
            return snapshots()
        }
        let origin = mountPoint(c)
        guard c.master, system.isMountPoint(origin) else { return nil }
        return [(origin, false)] + (c.snapmount ? snapshots() : [])
    }

    /// Rebuilds the NFS exports and Samba shares of every volume, leaving out `withdrawn`
    /// paths and everything below them; returns what went wrong.
    @discardableResult
    func publishExports(withdrawing withdrawn: [String] = [], closingShares: [String] = []) -> [String] {
        func kept(_ path: String) -> Bool { !withdrawn.contains { path == $0 || path.hasPrefix($0 + "/") } }
        do {
            return try withLock(paths.run + "/nfs/lock", what: "the NFS and Samba exports") {
                var problems: [String] = []
                var registry = NFSExportIDs.load(nfsExportIDsFile)
                registry.forgetVanished()
                var kernel: [NFSExport] = []
                var ganeshaExports: [NFSExport] = []
                var shares: [SambaShare] = []
                for name in definedVolumes() {
                    guard let c = try? config(name), c.export || c.samba, let published = publishedPaths(c) else { continue }
                    if c.samba, c.master, kept(mountPoint(c)) {
                        shares.append(SambaShare(volume: name, name: c.sambaShare ?? name, path: mountPoint(c), snapshotDirectory: snapshotDirectory(c)))
                    }
                    guard c.export else { continue }
                    let server = (try? nfsServer(c.nfsServer)) ?? .ganesha
                    for (path, readOnly) in published where kept(path) {
                        do {
                            try NFSExportText.checkPath(path)
                            let e = NFSExport(volume: name, path: path, readOnly: readOnly, id: try registry.id(path), clients: c.nfsClients)
                            if server == .kernel { kernel.append(e) } else { ganeshaExports.append(e) }
                        } catch {
                            problems.append("\(error)")
                        }
                    }
                }
                do { try registry.save(nfsExportIDsFile) } catch { problems.append("cannot save \(nfsExportIDsFile): \(error)") }
                if !kernel.isEmpty || FileManager.default.fileExists(atPath: kernelExportsFile) {
                    problems += KernelNFS.publish(kernel, file: kernelExportsFile)
                }
                if !ganeshaExports.isEmpty || FileManager.default.fileExists(atPath: ganesha.exportsFile) {
                    problems += ganesha.publish(ganeshaExports, system: system)
                }
                problems += publishShares(shares, closing: closingShares)
                return problems
            }
        } catch {
            return ["\(error)"]
        }
    }

    private func publishShares(_ shares: [SambaShare], closing: [String]) -> [String] {
        if shares.isEmpty && !FileManager.default.fileExists(atPath: sambaSharesFile) { return [] }
        do {
            let changed = try AtomicFile.writeIfChanged(SambaShares.text(shares), to: sambaSharesFile)
            if !changed && closing.isEmpty { return [] }
            if !shares.isEmpty { try SambaShares.ensureInclude(smbConf, shares: sambaSharesFile) }
        } catch {
            return ["\(error)"]
        }
        return SambaShares.reload(smbConf, closing: closing)
    }

    /// Withdraws what of volume `c` lies at or below `paths` from NFS and Samba clients.
    func withdrawExports(_ c: VolumeConfig, _ paths: [String]) -> [String] {
        guard c.export || c.samba else { return [] }
        let closing = c.samba && paths.contains(mountPoint(c)) ? [c.sambaShare ?? c.name] : []
        return publishExports(withdrawing: paths, closingShares: closing)
    }

    /// Checks the export options of `define master` before anything changes.
    func checkExportOptions(_ name: String, _ options: MasterOptions) throws {
        if options.export { _ = try nfsServer(options.nfsServer) }
        if options.samba {
            let share = options.sambaShare ?? name
            try SambaShares.checkName(share)
            guard SambaShares.installed() else {
                throw ZumastorError.invalid("--samba needs Samba and its shadow_copy2 module (apt-get install samba samba-vfs-modules)")
            }
            guard FileManager.default.fileExists(atPath: smbConf) else {
                throw ZumastorError.invalid("--samba: \(smbConf) does not exist (apt-get install samba)")
            }
            if SambaShares.sections(smbConf, ignoring: sambaSharesFile).contains(share.lowercased()) {
                throw ZumastorError.invalid("--samba: \(smbConf) already has a section [\(share)]; name the share with --samba-share NAME")
            }
            for other in definedVolumes() where other != name {
                if let o = try? config(other), o.samba, (o.sambaShare ?? other).lowercased() == share.lowercased() {
                    throw ZumastorError.invalid("--samba: volume '\(other)' already shares as [\(share)]; name this one with --samba-share NAME")
                }
            }
        }
    }

    /// What of volume `c` NFS and Samba clients see now.
    public func exportStatus(_ c: VolumeConfig) -> ExportStatus {
        var status = ExportStatus()
        if c.export {
            let server = (try? nfsServer(c.nfsServer)) ?? .ganesha
            status.nfsServer = server == .kernel ? "kernel" : "nfs-ganesha"
            let file = server == .kernel ? kernelExportsFile : ganesha.exportsFile
            let text = FileManager.default.contents(atPath: file).map { String(decoding: $0, as: UTF8.self) } ?? ""
            status.nfsExports = NFSExportText.exportedPaths(text, volume: c.name)
            if server == .ganesha { status.nfsPID = ganesha.runningPID().map(Int.init) }
            status.nfsClients = c.nfsClients
        }
        if c.samba {
            let share = c.sambaShare ?? c.name
            status.sambaShare = share
            let text = FileManager.default.contents(atPath: sambaSharesFile).map { String(decoding: $0, as: UTF8.self) } ?? ""
            status.sambaPublished = text.split(separator: "\n").contains { $0 == "[\(share)]" }
        }
        return status
    }
}

/// What `zumastor status` tells of a volume's exports.
public struct ExportStatus: Sendable {
    /// "kernel" or "nfs-ganesha" (nil: no --export).
    public var nfsServer: String?
    public var nfsExports: [String] = []
    public var nfsClients: [String] = []
    /// nfs-ganesha's pid when zumastor's instance runs.
    public var nfsPID: Int?
    /// The share's name (nil: no --samba), and whether smbd is given it now.
    public var sambaShare: String?
    public var sambaPublished = false
}
