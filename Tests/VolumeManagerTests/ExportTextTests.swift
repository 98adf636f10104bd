// The text zumastor writes for NFS servers and Samba, the ids exports keep, and the checks of
// export options. The servers themselves are exercised by Tests/cli/exports-e2e.sh.

import Foundation
import Testing
@testable import VolumeManager

@Suite struct ExportTextTests {
    let origin = NFSExport(volume: "vol", path: "/var/run/zumastor/mount/vol", readOnly: false, id: 1000, clients: ["*"])
    let snapshot = NFSExport(volume: "vol", path: "/var/run/zumastor/snapshot/vol/2026.12.07-10.00.00", readOnly: true, id: 1002,
                             clients: ["192.0.2.0/24", "backup.example"])

    @Test func ganeshaBlocks() {
        let text = NFSExportText.ganesha([origin, snapshot])
        #expect(text.components(separatedBy: "EXPORT {").count == 3)
        #expect(text.contains("""
                Export_Id = 1000;
                Path = "/var/run/zumastor/mount/vol";
                Pseudo = "/var/run/zumastor/mount/vol";
            """))
        #expect(text.contains("Filesystem_id = 1002.0;"))
        #expect(text.contains("CLIENT { Clients = *; Access_Type = RW; Protocols = 4; }"))
        #expect(text.contains("CLIENT { Clients = 192.0.2.0/24, backup.example; Access_Type = RO; Protocols = 4; }"))
        #expect(text.components(separatedBy: "Squash = Root_Squash;").count == 3)
        #expect(text.components(separatedBy: "Access_Type = None;").count == 3)
        #expect(NFSExportText.ganesha([]).split(separator: "\n").allSatisfy { $0.hasPrefix("#") })
        let other = NFSExport(volume: "other", path: "/srv/other", readOnly: false, id: 1001, clients: ["*"])
        #expect(NFSExportText.exportedPaths(NFSExportText.ganesha([origin, other, snapshot]), volume: "vol") == [origin.path, snapshot.path])
        #expect(NFSExportText.exportedPaths(NFSExportText.kernel([origin, other, snapshot]), volume: "vol") == [origin.path, snapshot.path])
        #expect(NFSExportText.exportedPaths(NFSExportText.kernel([other]), volume: "vol").isEmpty)
    }

    @Test func kernelLines() {
        let lines = NFSExportText.kernel([origin, snapshot]).split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(lines == [
            "/var/run/zumastor/mount/vol *(rw,fsid=1000,nohide,no_subtree_check,root_squash,sec=sys)",
            "/var/run/zumastor/snapshot/vol/2026.12.07-10.00.00 192.0.2.0/24(ro,fsid=1002,nohide,no_subtree_check,root_squash,sec=sys) backup.example(ro,fsid=1002,nohide,no_subtree_check,root_squash,sec=sys)",
        ])
    }

    @Test func pathsAndClients() throws {
        try NFSExportText.checkPath("/var/run/zumastor/mount/vol-1.a")
        for bad in ["relative", "/a b", "/a\"b", "/a;b", "/a#b", "/a\\b", "/a\nb"] {
            #expect(throws: ZumastorError.self) { try NFSExportText.checkPath(bad) }
        }
        #expect(try NFSExportText.parseClients("*") == ["*"])
        #expect(try NFSExportText.parseClients("192.0.2.0/24, host.example,2001:db8::/32") == ["192.0.2.0/24", "host.example", "2001:db8::/32"])
        for bad in ["", ",", "a b", "a;b", "a}b", "a\"b"] {
            #expect(throws: ZumastorError.self) { try NFSExportText.parseClients(bad) }
        }
    }

    @Test func idsAreKeptAndNotSoonReused() throws {
        let dir = FileManager.default.temporaryDirectory.path + "/zuma-ids-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["a", "b", "c"] { try FileManager.default.createDirectory(atPath: dir + "/" + name, withIntermediateDirectories: true) }
        var ids = NFSExportIDs()
        #expect(try ids.id(dir + "/a") == 1000)
        #expect(try ids.id(dir + "/b") == 1001)
        #expect(try ids.id(dir + "/a") == 1000)
        try FileManager.default.removeItem(atPath: dir + "/a")
        ids.forgetVanished()
        #expect(ids.ids[dir + "/a"] == nil)
        // A freed id goes round: the next path gets a new one.
        #expect(try ids.id(dir + "/c") == 1002)
        try ids.save(dir + "/ids.json")
        var loaded = NFSExportIDs.load(dir + "/ids.json")
        #expect(loaded.ids == ids.ids && loaded.last == 1002)
        #expect(try loaded.id(dir + "/b") == 1001)
        // Round from the top: 65535, then the lowest free one from 1000.
        loaded.last = UInt16.max - 1
        #expect(try loaded.id(dir + "/x") == UInt16.max)
        #expect(try loaded.id(dir + "/y") == 1000)
        #expect(NFSExportIDs.load(dir + "/missing.json").ids.isEmpty)
    }

    @Test func sambaText() throws {
        let share = SambaShare(volume: "vol", name: "homevol", path: "/var/run/zumastor/mount/vol", snapshotDirectory: "/var/run/zumastor/snapshot/vol")
        let text = SambaShares.text([share])
        #expect(text.contains("[homevol]\n"))
        #expect(text.contains("    path = /var/run/zumastor/mount/vol\n"))
        #expect(text.contains("    vfs objects = shadow_copy2\n"))
        #expect(text.contains("    shadow:snapdir = /var/run/zumastor/snapshot/vol\n"))
        #expect(text.contains("    shadow:format = %Y.%m.%d-%H.%M.%S\n"))
        #expect(text.contains("    shadow:localtime = yes\n"))
        try SambaShares.checkName("homevol")
        for bad in ["", "a b", "a/b", "[x]", "GLOBAL", "homes", "Printers", String(repeating: "a", count: 81)] {
            #expect(throws: ZumastorError.self) { try SambaShares.checkName(bad) }
        }
    }

    @Test func sambaSectionsAndInclude() throws {
        let dir = FileManager.default.temporaryDirectory.path + "/zuma-smb-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let conf = dir + "/smb.conf", other = dir + "/other.conf", ours = dir + "/ours.conf"
        try "[global]\n  include = \(other)\n[Data]\n path = /srv\n".write(toFile: conf, atomically: true, encoding: .utf8)
        try "[more]\n path = /x\n".write(toFile: other, atomically: true, encoding: .utf8)
        try "[vol]\n path = /y\n".write(toFile: ours, atomically: true, encoding: .utf8)
        try SambaShares.ensureInclude(conf, shares: ours)
        try SambaShares.ensureInclude(conf, shares: ours)
        let text = try String(contentsOfFile: conf, encoding: .utf8)
        #expect(text.components(separatedBy: "include = \(ours)").count == 2)
        #expect(text.hasPrefix("[global]\n  include = \(other)\n[Data]\n"))
        // Sections of smb.conf and the files it includes, zumastor's own left out.
        #expect(SambaShares.sections(conf, ignoring: ours) == ["global", "data", "more"])
        #expect(throws: ZumastorError.self) { try SambaShares.ensureInclude(dir + "/missing.conf", shares: ours) }
    }
}
