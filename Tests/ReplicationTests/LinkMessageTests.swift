import Crypto
import Testing
@testable import Replication

/// The replication protocol of docs/FORMAT.md, byte for byte: the expected bytes and digests
/// were computed by an independent encoder written from the document's tables (Python's
/// struct and hashlib). Then round trips, and malformed messages refused with a reason.
@Suite struct LinkMessageTests {
    func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
    func digest(_ bytes: [UInt8]) -> String { hex(Array(SHA256.hash(data: bytes))) }

    let snapshot = SnapshotIdentity(tag: 2, epoch: 3, createdNanoseconds: 4, sizeBytes: 8192, name: "2026.11.24-10.00.00 replication")
    var offer: LinkMessage {
        .offer(volumeUUID: Array(0..<16), chunkSizeBytes: 16384, originCapacityBytes: 0, snapshots: [snapshot],
               resume: ResumePoint(volumeUUID: Array(0..<16), base: 2, target: 4, targetCreatedNanoseconds: 5, nextChunk: 64))
    }

    @Test func goldenBytes() {
        #expect(hex(LinkMessage.hello(versionMin: 1, versionMax: 1, role: .connectorSends, volume: "vol", peerVolume: "src").encoded())
                == "0f0000000101000100010300766f6c0300737263")
        #expect(hex(LinkMessage.welcome(version: 1).encoded()) == "02000000020100")
        #expect(hex(LinkMessage.refuse("no").encoded()) == "040000000302006e6f")
        #expect(digest(offer.encoded()) == "6abe6d8deb51c20457087b429e6f32627dfe94936ab5a6505aa9c13bf78167a0")
        #expect(offer.encoded().count == 182)
        #expect(hex(LinkMessage.start(target: 4, startChunk: 64, upToDate: false).encoded()) == "11000000050004000000000000004000000000000000")
        #expect(hex(LinkMessage.data(Array("abc".utf8)).encoded()) == "0300000006616263")
        #expect(hex(LinkMessage.dataHeader(count: 3) + Array("abc".utf8)) == "0300000006616263")
        #expect(hex(LinkMessage.end.encoded()) == "0000000007")
        #expect(hex(LinkMessage.done(ok: true, snapshot: 4, message: "ok").encoded()) == "0d0000000801040000000000000002006f6b")
    }

    func decode(_ bytes: [UInt8]) throws -> LinkMessage {
        let length = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16 | Int(bytes[3]) << 24
        #expect(length == bytes.count - 5)
        return try LinkMessage.decode(type: bytes[4], body: Array(bytes[5...]))
    }

    @Test func roundTrips() throws {
        let messages: [LinkMessage] = [
            .hello(versionMin: 1, versionMax: 3, role: .listenerSends, volume: "a-b.c_d", peerVolume: String(repeating: "v", count: 64)),
            .welcome(version: 1), .refuse("no such volume: ünïcode"), offer,
            .offer(volumeUUID: [UInt8](repeating: 0, count: 16), chunkSizeBytes: 4096, originCapacityBytes: 1 << 40, snapshots: [], resume: nil),
            .offer(volumeUUID: Array(0..<16), chunkSizeBytes: 4096, originCapacityBytes: 0, snapshots: [snapshot, snapshot],
                   resume: ResumePoint(volumeUUID: Array(0..<16), base: nil, target: 9, targetCreatedNanoseconds: 1, nextChunk: 7)),
            .start(target: 7, startChunk: 0, upToDate: true), .data([1, 2, 3]), .end, .done(ok: false, snapshot: 0, message: "refused"),
        ]
        for m in messages { #expect(try decode(m.encoded()) == m) }
    }

    /// Found by the link fuzzer: a name that grew past 63 bytes (bytes that are not UTF-8,
    /// decoded with replacement characters) was written past its 96-byte field. Names are now
    /// cut to 63 bytes at a character's start, and a name that is not UTF-8 is refused.
    @Test func snapshotNamesStayInTheirField() throws {
        let long = SnapshotIdentity(tag: 1, epoch: 1, createdNanoseconds: 1, sizeBytes: 4096, name: String(repeating: "é", count: 40))
        let m = LinkMessage.offer(volumeUUID: Array(0..<16), chunkSizeBytes: 4096, originCapacityBytes: 0, snapshots: [long, snapshot], resume: nil)
        let bytes = m.encoded()
        #expect(bytes.count == 5 + 16 + 4 + 8 + 4 + 2 * 96 + 1)
        guard case let .offer(_, _, _, back, _) = try decode(bytes) else { Issue.record("not an offer"); return }
        #expect(back[0].name == String(repeating: "é", count: 31))
        #expect(back[1] == snapshot)
        var bad = bytes
        bad[5 + 32 + 33] = 0xff  // the first name's first byte: not UTF-8
        #expect(throws: LinkError.self) { try decode(bad) }
    }

    @Test func malformedMessagesAreRefused() {
        func refused(_ type: UInt8, _ body: [UInt8], _ reason: String) {
            do {
                _ = try LinkMessage.decode(type: type, body: body)
                Issue.record("accepted: \(reason)")
            } catch let e as LinkError {
                #expect("\(e)".contains(reason), "\(e)")
            } catch {
                Issue.record("\(error)")
            }
        }
        refused(9, [], "unknown message type 9")
        refused(1, [2, 0, 1, 0, 1] + [1, 0, 0x41] + [1, 0, 0x42], "offers versions 2 to 1")
        refused(1, [1, 0, 1, 0, 7] + [1, 0, 0x41] + [1, 0, 0x42], "unknown role")
        refused(1, [1, 0, 1, 0, 1] + [3, 0] + Array("../".utf8) + [1, 0, 0x42], "not a volume name")
        refused(1, [1, 0, 1, 0, 1] + [1, 0, 0x2d] + [1, 0, 0x42], "not a volume name")
        refused(1, [1, 0, 1, 0, 1, 0, 0], "not a volume name")
        refused(2, [1], "ends early")
        refused(2, [1, 0, 0], "bytes too many")
        refused(3, [2, 0, 0xff, 0xfe], "not UTF-8")
        refused(3, [0xff, 0xff], "a text of 65535 bytes")
        var tooMany = Array(offer.encoded()[5...])
        tooMany[28] = 0x01; tooMany[29] = 0x10  // 4097 snapshots
        refused(4, tooMany, "lists 4097 snapshots")
        var badFlags = Array(offer.encoded()[5...])
        badFlags[32 + 96] = 2
        refused(4, badFlags, "resume flags 2")
        var badName = Array(offer.encoded()[5...])
        badName[32 + 32] = 64  // a name length past 63
        refused(4, badName, "bad length or padding")
        refused(5, [2] + [UInt8](repeating: 0, count: 16), "START has flags 2")
        refused(8, [2] + [UInt8](repeating: 0, count: 10), "DONE has flag 2")
        refused(6, [UInt8](repeating: 0, count: LinkProtocol.dataBytesMax + 1), "DATA of")
        refused(7, [0], "bytes too many")
    }
}
