// Accepts pinned-TLS connections for a blocking server loop: `accept()` waits for the next
// peer whose key was accepted (past the handshake). At most `pendingMax` accepted connections
// wait to be taken and `connectionsMax` are open at once; past either, a new one is closed at once.

import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

public final class BlockingListener: @unchecked Sendable {
    private let server: Channel
    private let condition = NSCondition()
    private var waiting: [BlockingConnection] = []
    private var closed = false
    private let open = NIOLockedValueBox(0)
    public let connectionsMax: Int
    public static let pendingMax = 4

    /// The port it listens on (the one asked for, or the one the system gave for 0).
    public var port: Int { server.localAddress?.port ?? 0 }

    /// Listens on `host`:`port`; `accept` decides on each peer's key (nil: none shown) and is
    /// told each decision, with the peer's address.
    public init(host: String, port: Int, tls: PinnedTLS, group: EventLoopGroup, connectionsMax: Int = 8,
                idleSeconds: Int64? = nil, accept: @escaping @Sendable (String, KeyFingerprint?) -> Bool) throws {
        self.connectionsMax = connectionsMax
        let box = WeakBox<BlockingListener>()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 16)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let peer = channel.remoteAddress.map { peerAddress($0) } ?? "?"
                    guard let listener = box.value, listener.admit() else {
                        channel.close(promise: nil)
                        return
                    }
                    channel.closeFuture.whenComplete { _ in listener.release() }
                    let inbox = Inbox()
                    let connection = BlockingConnection(channel: channel, inbox: inbox, peer: peer)
                    try channel.pipeline.syncOperations.addHandlers(tls.serverHandlers { shown in
                        guard accept(peer, shown) else { return false }
                        connection.peerKey = shown
                        return true
                    })
                    try addInbox(inbox, to: channel, idleSeconds: idleSeconds)
                    // Handed over once its peer is accepted.
                    inbox.onOpen = { listener.enqueue(connection) }
                }
            }
        do {
            server = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            throw TransportError.unreachable("cannot listen on \(host):\(port): \(error)")
        }
        box.value = self
    }

    private func admit() -> Bool {
        open.withLockedValue { n in
            guard n < connectionsMax else { return false }
            n += 1
            return true
        }
    }

    private func release() { open.withLockedValue { $0 -= 1 } }

    /// Runs on the event loop.
    private func enqueue(_ c: BlockingConnection) {
        condition.lock()
        defer { condition.unlock() }
        guard !closed, waiting.count < Self.pendingMax else { c.abandon(); return }
        waiting.append(c)
        condition.signal()
    }

    /// The next accepted connection; nil once the listener is closed.
    public func accept() -> BlockingConnection? {
        condition.lock()
        defer { condition.unlock() }
        while waiting.isEmpty && !closed { condition.wait() }
        return waiting.isEmpty ? nil : waiting.removeFirst()
    }

    public func close() {
        condition.lock()
        closed = true
        let rest = waiting
        waiting.removeAll()
        condition.broadcast()
        condition.unlock()
        rest.forEach { $0.close() }
        try? server.close().wait()
    }
}

/// The listener as the channel initializer sees it: set once the listener is complete.
private final class WeakBox<T: AnyObject>: @unchecked Sendable {
    weak var value: T?
}

/// "10.0.0.1:5000" or "[2001:db8::1]:5000"; an IPv4 peer of an IPv6 socket is shown as IPv4.
func peerAddress(_ a: SocketAddress) -> String {
    var ip = a.ipAddress ?? "?"
    if ip.hasPrefix("::ffff:") && ip.contains(".") { ip.removeFirst(7) }
    return ip.contains(":") ? "[\(ip)]:\(a.port ?? 0)" : "\(ip):\(a.port ?? 0)"
}
