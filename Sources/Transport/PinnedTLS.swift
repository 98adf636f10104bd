// Mutually authenticated TLS 1.3 between hosts that pin each other's keys. Each side shows its
// host certificate and accepts the other only when the key in the other's certificate has a
// pinned fingerprint; TLS itself proves that the peer holds that key (its handshake signature),
// so no certificate authority, name or date is trusted. There is no plain-text mode.

import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import NIOTLS

public final class PinnedTLS: Sendable {
    public let identity: HostIdentity
    private let serverContext: NIOSSLContext
    private let clientContext: NIOSSLContext

    public init(identity: HostIdentity) throws {
        self.identity = identity
        var server = TLSConfiguration.makeServerConfiguration(certificateChain: [.certificate(identity.certificate)],
                                                              privateKey: .privateKey(identity.privateKey))
        var client = TLSConfiguration.makeClientConfiguration()
        client.certificateChain = [.certificate(identity.certificate)]
        client.privateKey = .privateKey(identity.privateKey)
        (server.minimumTLSVersion, server.maximumTLSVersion) = (.tlsv13, .tlsv13)
        (client.minimumTLSVersion, client.maximumTLSVersion) = (.tlsv13, .tlsv13)
        // Both sides ask for the other's certificate; the verification callback decides.
        server.certificateVerification = .noHostnameVerification
        client.certificateVerification = .noHostnameVerification
        do {
            serverContext = try NIOSSLContext(configuration: server)
            clientContext = try NIOSSLContext(configuration: client)
        } catch {
            throw TransportError.identity("cannot set up TLS with this host's key: \(error)")
        }
    }

    /// The handlers for an accepted connection, in pipeline order: `accept` says whether a
    /// peer key is pinned here (nil: the peer showed no certificate) and is told each decision.
    public func serverHandlers(accept: @escaping @Sendable (KeyFingerprint?) -> Bool) -> [ChannelHandler] {
        let gate = PeerGate(decide: accept)
        return [NIOSSLServerHandler(context: serverContext, customVerificationCallback: gate.verifier), gate]
    }

    /// The handlers for a connection to a peer whose key must be `expected`, in pipeline order;
    /// `refused` is told the key it showed instead.
    public func clientHandlers(expected: KeyFingerprint,
                               refused: @escaping @Sendable (KeyFingerprint?) -> Void = { _ in }) throws -> [ChannelHandler] {
        let gate = PeerGate { shown in
            if shown == expected { return true }
            refused(shown)
            return false
        }
        return [try NIOSSLClientHandler(context: clientContext, serverHostname: nil, customVerificationCallback: gate.verifier), gate]
    }
}

/// Lets nothing through until the handshake completed with a key that `decide` accepted. TLS
/// asks the verification callback only about a certificate the peer showed (BoringSSL itself
/// refuses a client that shows none when verification is on); the gate makes a peer without
/// an accepted key fail whatever the library's settings.
final class PeerGate: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let decide: @Sendable (KeyFingerprint?) -> Bool
    /// Whether the callback accepted the peer's certificate (set on the event loop's thread or
    /// a verification thread, read on the event loop).
    /// TLS passes no application data before the handshake completes, so this also says
    /// whether reads may pass.
    private let accepted = NIOLockedValueBox(false)

    init(decide: @escaping @Sendable (KeyFingerprint?) -> Bool) { self.decide = decide }

    var verifier: NIOSSLCustomVerificationCallback {
        { [self] certificates, promise in
            let shown = certificates.first.flatMap { try? KeyFingerprint(certificate: $0) }
            let ok = shown != nil && decide(shown)
            accepted.withLockedValue { $0 = ok }
            promise.succeed(ok ? .certificateVerified : .failed)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? TLSUserEvent, case .handshakeCompleted = e {
            guard accepted.withLockedValue({ $0 }) else {
                _ = decide(nil)
                context.close(promise: nil)
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard accepted.withLockedValue({ $0 }) else { return context.close(promise: nil) }
        context.fireChannelRead(data)
    }
}
