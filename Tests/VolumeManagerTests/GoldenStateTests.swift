// The state files of release 0.1.0, kept as written (Golden/): a later build must read them
// as they are, with every field, and fields absent from older files take their defaults.
// (The store's own golden images are in SnapStoreTests/Golden.)

import Foundation
import Replication
import Testing
@testable import VolumeManager

@Suite struct GoldenStateTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Golden"

    func path(_ name: String) -> String { Self.directory + "/" + name }

    /// Decoded strictly (LinkState.load would fall back to an empty state on any mismatch).
    func linkState(_ name: String) throws -> LinkState {
        try JSONDecoder().decode(LinkState.self, from: try Data(contentsOf: URL(fileURLWithPath: path(name))))
    }

    /// What the current build writes reads back the same.
    func roundTrip<T: Codable & Equatable>(_ value: T) throws {
        #expect(try JSONDecoder().decode(T.self, from: try JSONEncoder().encode(value)) == value)
    }

    @Test func masterConfiguration() throws {
        let c = try VolumeConfig.load(path("config-0.1.0-master.json"))
        #expect(c.name == "vol" && c.origin == "/dev/sdb1" && c.store == "/dev/sdc1")
        #expect(c.master && c.export && c.samba && c.dotsnapshot && c.snapmount && c.expediteFreeze)
        #expect(c.cacheSizeBytes == 64 << 20 && c.mountOptions == "noatime" && c.mountPoint == nil)
        #expect(c.nfsServer == .ganesha && c.nfsClients == ["192.0.2.0/24"] && c.sambaShare == "projects")
        #expect(c.schedule == [ScheduleEntry(kind: "hourly", keep: 24), ScheduleEntry(kind: "daily", keep: 7)])
        #expect(c.nextSnapshotTag == 42 && c.warnFillPercent == 85 && c.lastSnapshotDirectory == "2026.12.07-20.00.00")
        #expect(c.replicated == ["/var/lib/replica/store": 40])
        let t = try #require(c.targets.first)
        #expect(t.host == "backup.example" && t.port == 11235 && t.remoteName == "vol-copy" && t.period == 600)
        #expect(t.rateBytesPerSecond == 10 << 20 && t.compression == "lzma" && t.started)
        #expect(t.key == "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU")
        try roundTrip(c)
    }

    @Test func replicaConfiguration() throws {
        let c = try VolumeConfig.load(path("config-0.1.0-replica.json"))
        let s = try #require(c.source)
        #expect(!c.master && s.host == "nas.example" && s.port == 11235 && s.remoteName == "vol")
        #expect(s.period == 3600 && s.mountSnap && s.started)
        try roundTrip(c)
    }

    @Test func fieldsAbsentFromOlderFilesTakeTheirDefaults() throws {
        let c = try VolumeConfig.load(path("config-minimal.json"))
        #expect(c.name == "old" && c.master && c.schedule == [ScheduleEntry(kind: "hourly", keep: 4)])
        #expect(c.snapmount && !c.export && c.nfsServer == .auto && c.nfsClients == ["*"] && !c.samba)
        #expect(c.expediteFreeze && c.warnFillPercent == 90 && c.nextSnapshotTag == 0 && c.source == nil)
        let t = try #require(c.targets.first)
        #expect(t.compression == "zstd" && t.started && t.period == nil && t.rateBytesPerSecond == nil && t.remoteName == nil)
    }

    @Test func aSourceWithoutItsNewerFields() throws {
        let s = try #require(try VolumeConfig.load(path("config-replica-minimal.json")).source)
        #expect(s.host == "nas.example" && !s.mountSnap && !s.started && s.period == nil && s.remoteName == nil)
    }

    @Test func targetState() throws {
        let s = try linkState("target-state-0.1.0.json")
        #expect(s.held == 40 && s.sending == 41 && s.lastSnapshot == 40 && s.lastSuccess == 1_765_137_000)
        #expect(s.lastError == "backup.example:11235: connection refused" && s.lastResumedAt == 1 << 20)
        #expect(s.bytesTotal == 734_003_200 && s.failures == ["network": 3, "peer_key": 1])
        #expect(s.progress?.chunksDone == 64 && s.progress?.chunksTotal == 512 && s.progress?.pid == 4242)
        #expect(LinkState.load(path("target-state-0.1.0.json")) == s)
        try roundTrip(s)
    }

    @Test func sourceStateWithAResumePoint() throws {
        let s = try linkState("source-state-0.1.0.json")
        #expect(s.held == 40 && s.bytesTotal == nil && s.failures == nil)
        #expect(s.resume == ResumePoint(volumeUUID: Array(0x10...0x1F), base: 40, target: 41,
                                        targetCreatedNanoseconds: 1_765_137_580_000_000_000, nextChunk: 2048))
        try roundTrip(s)
    }
}
