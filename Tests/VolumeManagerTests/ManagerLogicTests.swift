// The manager's logic on real stores and real control servers, with the machine's mounts,
// loop devices and processes kept by TestSystem: rotation and links, the master's start and
// stop (and a refused stop that changes nothing), and replication's holds and state.

import Foundation
import SnapStore
import Testing
@testable import VolumeManager
import VolumeInterface
import VolumeServer

/// A scratch root with its own paths, machine and manager; removed with it.
final class ManagerWorld {
    let directory: String
    let paths: ZumastorPaths
    let system: TestSystem
    let manager: VolumeManager

    init() throws {
        directory = FileManager.default.temporaryDirectory.path + "/zuma-manager-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory + "/bin", withIntermediateDirectories: true)
        paths = ZumastorPaths(root: directory + "/root")
        system = TestSystem(paths: paths)
        // The schedule agent is found beside ddsnap; TestSystem starts it without running it.
        for program in ["ddsnap", "zumastor"] {
            FileManager.default.createFile(atPath: directory + "/bin/" + program, contents: Data("#!/bin/false\n".utf8),
                                           attributes: [.posixPermissions: 0o755])
        }
        manager = VolumeManager(paths: paths, ddsnapPath: directory + "/bin/ddsnap", system: system)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// A file of `bytes` (sparse).
    func file(_ name: String, bytes: UInt64 = 32 << 20) -> String {
        let path = directory + "/" + name
        FileManager.default.createFile(atPath: path, contents: nil)
        truncate(path, off_t(bytes))
        return path
    }

    @discardableResult
    func defineVolume(_ name: String) throws -> VolumeConfig {
        var d = VolumeDefinition(name: name, origin: file(name + "-origin"), store: file(name + "-store"))
        d.initialize = true
        return try manager.defineVolume(d)
    }

    /// A store of its own, opened here, to replicate into.
    func replica(_ name: String, originBytes: UInt64 = 32 << 20) throws -> any VolumeAccess {
        let store = file(name + "-store")
        let origin = file(name + "-origin", bytes: originBytes)
        do {
            // Closed, and its devices (and their locks) let go, before it is opened again.
            let s = try Store.initialize(store: try FileDevice(path: store), origin: try FileDevice(path: origin),
                                         chunkSizeBytes: 16384, originPath: origin)
            try s.close()
        }
        return try VolumeManager.openReplica(store)
    }

    func server(_ name: String) throws -> any VolumeServerLink {
        try #require(manager.server(name))
    }

    /// Writes `bytes` at `offset` of the volume's origin, through its server.
    func write(_ name: String, _ bytes: [UInt8], at offset: UInt64) throws {
        var sent = false
        _ = try server(name).write(snapshot: nil, offset: offset, flush: true) { buffer in
            if sent { return 0 }
            sent = true
            buffer.copyMemory(from: UnsafeRawBufferPointer(start: bytes, count: bytes.count))
            return bytes.count
        }
    }

    func read(_ access: any VolumeAccess, snapshot: UInt64?, offset: UInt64, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try access.read(snapshot: snapshot, offset: offset, into: $0) }
        return out
    }
}

@Suite(.serialized) struct ManagerLogicTests {
    @Test func rotationKeepsTheScheduledCountWithMountsAndLinks() throws {
        let w = try ManagerWorld()
        let c = try w.defineVolume("vol")
        #expect(w.system.attachedDevices(volume: "vol").map(\.tag) == [nil])
        try w.manager.defineMaster("vol")
        let origin = w.manager.mountPoint(c)
        #expect(w.system.mounted[origin] == "/dev/mapper/vol")
        #expect(w.system.runningAgents == ["vol"])
        try w.manager.defineSchedule("vol", [ScheduleEntry(kind: "hourly", keep: 2)])

        let taken = try (0..<4).map { _ in try w.manager.snapshot("vol", kinds: ["hourly"]) }
        let tags = taken.map(\.snapshot.tag)
        #expect(zip(tags, tags.dropFirst()).allSatisfy { $1 == $0 + 2 }, "ids advance by two: \(tags)")
        let directories = taken.map { $0.snapshot.label!.directory }
        #expect(Set(directories).count == 4 && directories == directories.sorted(), "\(directories)")
        #expect(taken.map(\.dropped) == [[], [], [tags[0]], [tags[1]]])
        #expect(taken.allSatisfy { $0.problems.isEmpty })
        #expect(w.system.frozen == Array(repeating: origin, count: 4), "each snapshot is taken with the origin frozen")

        // What stays: the two newest, mounted read-only, attached, and linked newest first.
        #expect(try w.server("vol").snapshots().map(\.tag) == Array(tags.suffix(2)))
        let snapshotDirectory = w.manager.snapshotDirectory(c)
        for (i, d) in directories.enumerated() {
            let mounted = w.system.isMountPoint(snapshotDirectory + "/" + d)
            #expect(mounted == (i >= 2), "\(d)")
            #expect(FileManager.default.fileExists(atPath: snapshotDirectory + "/" + d) == (i >= 2), "a dropped snapshot's directory goes")
        }
        #expect(w.system.attachedDevices(volume: "vol").map(\.tag) == [nil] + tags.suffix(2).map { Optional($0) })
        #expect(w.system.attachedDevices(volume: "vol").filter { $0.tag != nil }.allSatisfy { !$0.writable })
        let link = { (n: Int) in try? FileManager.default.destinationOfSymbolicLink(atPath: snapshotDirectory + "/hourly.\(n)") }
        #expect(link(0) == directories[3] && link(1) == directories[2] && link(2) == nil)

        // A lower count rotates at once.
        #expect(try w.manager.defineSchedule("vol", [ScheduleEntry(kind: "hourly", keep: 1)]) == [tags[2]])
        #expect(link(0) == directories[3] && link(1) == nil)
        #expect(try w.manager.config("vol").nextSnapshotTag == tags[3] + 2)
    }

    @Test func aRefusedStopChangesNothingAndAStopReleasesEverything() throws {
        let w = try ManagerWorld()
        let c = try w.defineVolume("vol")
        try w.manager.defineMaster("vol")
        try w.manager.defineSchedule("vol", [ScheduleEntry(kind: "daily", keep: 3)])
        let snap = try w.manager.snapshot("vol", kinds: ["daily"])
        let origin = w.manager.mountPoint(c)
        let directory = try #require(snap.mountDirectory)
        let before = w.system.mounted

        w.system.busy = [origin + "/a/file"]
        #expect(throws: ZumastorError.self) { try w.manager.stopVolume("vol") }
        #expect(w.system.mounted == before, "nothing unmounted")
        #expect(w.system.runningAgents == ["vol"], "the agent runs again")
        #expect(w.manager.server("vol") != nil)

        w.system.busy = []
        try w.manager.stopVolume("vol")
        #expect(w.system.mounted.isEmpty)
        #expect(w.system.runningAgents.isEmpty)
        #expect(w.manager.server("vol") == nil)

        try w.manager.startVolume("vol")
        #expect(w.system.mounted == before, "a start mounts the origin and the snapshot again")
        #expect(w.system.isMountPoint(directory))
        #expect(w.system.runningAgents == ["vol"])
    }

    @Test func aStopAfterTheServerDiedReleasesItsLeftovers() throws {
        let w = try ManagerWorld()
        let c = try w.defineVolume("vol")
        try w.manager.defineMaster("vol")
        try w.manager.defineSchedule("vol", [ScheduleEntry(kind: "hourly", keep: 2)])
        _ = try w.manager.snapshot("vol", kinds: ["hourly"])
        w.system.crashServer(volume: "vol")
        // Busy mounts of a dead server's devices go lazily: nothing can be written through them.
        w.system.busy = [w.manager.mountPoint(c) + "/file"]
        try w.manager.stopVolume("vol")
        #expect(w.system.mounted.isEmpty)
        #expect(w.system.runningAgents.isEmpty)
        #expect(w.system.released == ["vol"])
        w.system.busy = []
        try w.manager.startVolume("vol")
        #expect(w.system.mounted.count == 2, "origin and snapshot mounted again by the new server")
    }

    @Test func replicationHoldsOneBasePerTargetAndDropsTheRest() throws {
        let w = try ManagerWorld()
        try w.defineVolume("src")
        let (r1, r2) = (try w.replica("r1"), try w.replica("r2"))
        let first = (0..<40_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try w.write("src", first, at: 1 << 20)

        let a = try w.manager.replicate("src", to: r1, target: "r1")
        #expect(a.base == nil, "a first replication is a full copy")
        let b = try w.manager.replicate("src", to: r2, target: "r2")
        #expect(b.base == nil && b.dropped.isEmpty, "r1's base is held")
        try w.write("src", Array(repeating: 0x5a, count: 5000), at: (1 << 20) + 100)
        let c = try w.manager.replicate("src", to: r1, target: "r1")
        #expect(c.base == a.snapshot.tag, "the delta starts from what r1 holds")
        #expect(c.dropped == [a.snapshot.tag], "r1's old base goes, r2's stays")
        #expect(try w.manager.config("src").replicated == ["r1": c.snapshot.tag, "r2": b.snapshot.tag])
        #expect(try w.server("src").snapshots().map(\.tag) == [b.snapshot.tag, c.snapshot.tag])

        let source = try w.read(w.server("src"), snapshot: nil, offset: 1 << 20, count: 64 << 10)
        #expect(try w.read(r1, snapshot: c.snapshot.tag, offset: 1 << 20, count: 64 << 10) == source)
        #expect(try w.read(r2, snapshot: b.snapshot.tag, offset: 1 << 20, count: 64 << 10)
                == Array(first + [UInt8](repeating: 0, count: (64 << 10) - first.count)))
    }

    @Test func aFailedReplicationLeavesTheSourceAsItWas() throws {
        let w = try ManagerWorld()
        try w.defineVolume("src")
        try w.defineVolume("other")
        let foreign = try w.replica("foreign")
        _ = try w.manager.replicate("other", to: foreign, target: "f")
        let before = try w.server("src").snapshots()
        // Refused before anything is taken: the replica belongs to another volume.
        #expect(throws: ZumastorError.self) { _ = try w.manager.replicate("src", to: foreign, target: "f") }
        #expect(try w.server("src").snapshots() == before)
        // Refused by the replica after the snapshot was taken: its copy of the base differs
        // from the source's where the delta changes it.
        let r = try w.replica("r")
        let base = try w.manager.replicate("src", to: r, target: "r").snapshot.tag
        let host = try #require(r as? VolumeHost)
        host.setWritable(true, snapshot: base)
        try [UInt8](repeating: 0xee, count: 4096).withUnsafeBytes { try host.write(snapshot: base, offset: 1 << 20, $0) }
        try w.write("src", [1, 2, 3], at: 1 << 20)
        let held = try w.server("src").snapshots()
        let config = try w.manager.config("src")
        #expect(throws: (any Error).self) { _ = try w.manager.replicate("src", to: r, target: "r") }
        #expect(try w.server("src").snapshots() == held, "the snapshot taken for it is gone again")
        #expect(try w.manager.config("src").replicated == config.replicated)
        #expect(try r.snapshots().map(\.tag) == [base], "the replica took nothing")
    }
}
