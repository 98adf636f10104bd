// Pinned connections for blocking threads on loopback: a stream larger than every buffer
// arrives whole and in order, both ways; a stream cut before its end frame, or a frame past
// the limit, is an error for the reader, never a short stream taken as whole.

import Foundation
import NIOCore
import NIOPosix
import Testing
@testable import Transport

@Suite(.serialized) struct BlockingConnectionTests {
    let directory = FileManager.default.temporaryDirectory.path + "/zuma-conn-\(UUID().uuidString)"

    /// Runs `body` with a connection to a listener on loopback that pins the client's key, and
    /// the side the listener accepted.
    func withPair(_ body: (_ client: BlockingConnection, _ server: BlockingConnection) throws -> Void) throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let server = try PinnedTLS(identity: HostIdentity.loadOrCreate(directory: directory + "/server"))
        let client = try PinnedTLS(identity: HostIdentity.loadOrCreate(directory: directory + "/client"))
        let pinned = client.identity.fingerprint
        let listener = try BlockingListener(host: "127.0.0.1", port: 0, tls: server, group: group) { _, key in key == pinned }
        defer { listener.close() }
        let c = try BlockingConnection.connect(host: "127.0.0.1", port: listener.port, tls: client,
                                               expected: server.identity.fingerprint, group: group)
        try body(c, try #require(listener.accept()))
    }

    @Test func aLargeStreamArrivesWholeBothWays() throws { try withPair { client, server in
        // 24 MiB: three times what a reader buffers, so the writer waits for the reader.
        let data = (0..<(24 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
        let writer = Thread {
            try? data.withUnsafeBytes { try client.write($0) }
            try? client.finishWriting()
        }
        writer.start()
        let received = try server.readAll(limit: 32 << 20)
        #expect(received.count == data.count)
        #expect(received == data)
        try Array("done".utf8).withUnsafeBytes { try server.write($0) }
        try server.finishWriting()
        #expect(String(decoding: try client.readAll(limit: 100), as: UTF8.self) == "done")
    } }

    @Test func aCutStreamIsAnErrorNotAnEnd() throws { try withPair { client, server in
        try Array(repeating: UInt8(7), count: 100_000).withUnsafeBytes { try client.write($0) }
        client.close()
        #expect(throws: TransportError.self) { _ = try server.readAll(limit: 1 << 20) }
    } }

    @Test func aFramePastTheLimitIsRefused() throws { try withPair { client, server in
        // A forged header: 4 MiB + 1 announced.
        let length = UInt32(BlockingConnection.frameBytesMax + 1)
        try client.sendRaw([UInt8(length & 0xff), UInt8(length >> 8 & 0xff), UInt8(length >> 16 & 0xff), UInt8(length >> 24)])
        #expect(throws: TransportError.self) { _ = try server.readAll(limit: 64 << 20) }
    } }
}
