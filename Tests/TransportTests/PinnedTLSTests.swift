// Host identities and pinned TLS on loopback: a peer is served only with the pinned key, in
// either direction; a wrong key, no certificate or plain TCP gets nothing through.

import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import Testing
@testable import Transport

/// Echoes what it reads.
final class Echo: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.writeAndFlush(data, promise: nil)
    }
}

/// Completes `reply` with the first bytes read, or the connection's error or end.
final class FirstReply: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let reply: EventLoopPromise<String>
    init(_ reply: EventLoopPromise<String>) { self.reply = reply }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reply.succeed(String(buffer: unwrapInboundIn(data)))
    }
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        reply.fail(error)
        context.close(promise: nil)
    }
    func channelInactive(context: ChannelHandlerContext) {
        reply.fail(TransportError.unreachable("closed"))
    }
}

/// Records the keys a side was shown.
final class Seen: @unchecked Sendable {
    private let lock = NSLock()
    private var keys: [KeyFingerprint?] = []
    func add(_ k: KeyFingerprint?) { lock.lock(); keys.append(k); lock.unlock() }
    var all: [KeyFingerprint?] { lock.lock(); defer { lock.unlock() }; return keys }
}

@Suite(.serialized) struct PinnedTLSTests {
    let directory = FileManager.default.temporaryDirectory.path + "/zuma-tls-\(UUID().uuidString)"

    func identity(_ name: String) throws -> HostIdentity {
        try HostIdentity.loadOrCreate(directory: directory + "/" + name)
    }

    /// Serves an echo on loopback with `tls`, pinning `pinned`; runs `body` with its port.
    func withServer(_ tls: PinnedTLS, pinned: Set<KeyFingerprint>, seen: Seen, _ body: (Int, EventLoopGroup) throws -> Void) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let server = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers(tls.serverHandlers { key in
                        seen.add(key)
                        return key.map { pinned.contains($0) } ?? false
                    })
                    try channel.pipeline.syncOperations.addHandler(Echo())
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? server.close().wait() }
        try body(server.localAddress!.port!, group)
    }

    /// Connects with `handler` first in the pipeline (nil: plain TCP), sends a line, and returns
    /// the reply or the error (within 10 s).
    func ping(port: Int, group: EventLoopGroup, _ handlers: (@Sendable () throws -> [ChannelHandler])?) -> Result<String, Error> {
        Result {
            let reply = group.next().makePromise(of: String.self)
            let channel = try ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let handlers { try channel.pipeline.syncOperations.addHandlers(try handlers()) }
                        try channel.pipeline.syncOperations.addHandler(FirstReply(reply))
                    }
                }
                .connect(host: "127.0.0.1", port: port).wait()
            defer { channel.close(promise: nil) }
            // Long enough to be more than a TLS record header: plain text is refused at once.
            channel.writeAndFlush(ByteBuffer(string: "ping from a client\r\n"), promise: nil)
            let timeout = group.next().scheduleTask(in: .seconds(10)) { reply.fail(TransportError.unreachable("no answer in 10 s")) }
            defer { timeout.cancel() }
            return try reply.futureResult.wait()
        }
    }

    @Test func anIdentityIsMadeOnceKeptPrivateAndNamedByItsFingerprint() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = try identity("a")
        let again = try identity("a")
        #expect(first.fingerprint == again.fingerprint)
        #expect(try identity("b").fingerprint != first.fingerprint)
        let attributes = try FileManager.default.attributesOfItem(atPath: directory + "/a/" + HostIdentity.keyFile)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(KeyFingerprint(parsing: first.fingerprint.description) == first.fingerprint)
        #expect(first.fingerprint.description.count == 50)
        for bad in ["", "SHA256:", "sha256:" + first.fingerprint.description.dropFirst(7), first.fingerprint.description + "A",
                    String(first.fingerprint.description.dropLast()) + "!"] {
            #expect(KeyFingerprint(parsing: bad) == nil, "\(bad)")
        }
        // A certificate that does not carry the key is refused, naming both files.
        try FileManager.default.removeItem(atPath: directory + "/a/" + HostIdentity.certificateFile)
        try FileManager.default.copyItem(atPath: directory + "/b/" + HostIdentity.certificateFile,
                                         toPath: directory + "/a/" + HostIdentity.certificateFile)
        #expect(throws: TransportError.self) { try HostIdentity.load(directory: directory + "/a") }
    }

    @Test func pinnedKeysBothWaysConnect() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (server, client) = (try PinnedTLS(identity: identity("server")), try PinnedTLS(identity: identity("client")))
        let seen = Seen()
        try withServer(server, pinned: [client.identity.fingerprint], seen: seen) { port, group in
            let reply = ping(port: port, group: group) { try client.clientHandlers(expected: server.identity.fingerprint) }
            let answer = try reply.get()
            #expect(answer == "ping from a client\r\n")
        }
        #expect(seen.all == [client.identity.fingerprint])
    }

    @Test func anUnpinnedClientIsRefused() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try PinnedTLS(identity: identity("server"))
        let (pinned, stranger) = (try identity("pinned"), try PinnedTLS(identity: identity("stranger")))
        let seen = Seen()
        try withServer(server, pinned: [pinned.fingerprint], seen: seen) { port, group in
            let reply = ping(port: port, group: group) { try stranger.clientHandlers(expected: server.identity.fingerprint) }
            #expect(throws: (any Error).self) { try reply.get() }
        }
        #expect(seen.all == [stranger.identity.fingerprint], "the server saw, and refused, the stranger's key")
    }

    @Test func aServerWithAnotherKeyIsRefused() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (server, client) = (try PinnedTLS(identity: identity("server")), try PinnedTLS(identity: identity("client")))
        let expected = try identity("expected").fingerprint
        let refused = Seen()
        try withServer(server, pinned: [client.identity.fingerprint], seen: Seen()) { port, group in
            let reply = ping(port: port, group: group) { try client.clientHandlers(expected: expected) { refused.add($0) } }
            #expect(throws: (any Error).self) { try reply.get() }
        }
        #expect(refused.all == [server.identity.fingerprint])
    }

    @Test func noCertificateOrPlainTCPGetsNothing() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let server = try PinnedTLS(identity: identity("server"))
        let seen = Seen()
        try withServer(server, pinned: [try identity("client").fingerprint], seen: seen) { port, group in
            var anonymous = TLSConfiguration.makeClientConfiguration()
            anonymous.certificateVerification = .none
            let context = try NIOSSLContext(configuration: anonymous)
            let tls = ping(port: port, group: group) { [try NIOSSLClientHandler(context: context, serverHostname: nil)] }
            #expect(throws: (any Error).self) { try tls.get() }
            // Plain text gets at most a TLS alert back, never its echo.
            let plain = ping(port: port, group: group, nil)
            #expect((try? plain.get()) != "ping from a client\r\n")
        }
        #expect(seen.all.isEmpty, "neither showed a key to ask about")
    }
}
