// A pinned-TLS connection used from one blocking thread, as delta streams are made and applied
// (the encoder pushes bytes, the applier pulls them). NIO runs the socket and TLS on its event
// loop; this side waits. Both directions are bounded: at most `bufferedBytesMax` received and
// not yet read (then the connection stops reading), and at most `unconfirmedBytesMax` written
// and not yet on the socket (then a write waits until all of it is).
//
// On the wire (inside TLS) the bytes travel in frames: u32 LE length, then that many bytes; a
// frame of length 0 ends the stream of one direction, so a reader knows the end from a cut
// connection.

import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOTLS

public final class BlockingConnection: @unchecked Sendable {
    /// The peer's address, for messages.
    public let peer: String
    /// The key the peer showed (accepted, so one that was pinned).
    public internal(set) var peerKey: KeyFingerprint?
    private let channel: Channel
    private let inbox: Inbox

    public static let bufferedBytesMax = 8 << 20
    static let unconfirmedBytesMax = 4 << 20
    /// The largest frame: a reader never holds more than one.
    public static let frameBytesMax = 4 << 20

    /// The newest write not yet known to be on the socket (writes complete in order, so it
    /// stands for all of them), and the bytes written since the last one known to be.
    private var newestWrite: EventLoopFuture<Void>?
    private var unconfirmedBytes = 0
    /// What is left of the frame being read.
    private var frameLeft = 0
    private var ended = false

    init(channel: Channel, inbox: Inbox, peer: String) {
        (self.channel, self.inbox, self.peer) = (channel, inbox, peer)
    }

    /// Connects to `host`:`port` with pinned TLS; the peer's key must be `expected`.
    /// With `idleSeconds`, a connection on which nothing is received and no write completes
    /// for that long is closed (a peer gone, or a link down): waits on it fail.
    public static func connect(host: String, port: Int, tls: PinnedTLS, expected: KeyFingerprint,
                               group: EventLoopGroup, timeoutSeconds: Int64 = 30, idleSeconds: Int64? = nil) throws -> BlockingConnection {
        let inbox = Inbox()
        let refused = NIOLockedValueBox<KeyFingerprint??>(nil)
        let channel: Channel
        do {
            channel = try ClientBootstrap(group: group)
                .connectTimeout(.seconds(timeoutSeconds))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(try tls.clientHandlers(expected: expected) { shown in
                            refused.withLockedValue { $0 = .some(shown) }
                        })
                        try addInbox(inbox, to: channel, idleSeconds: idleSeconds)
                    }
                }
                .connect(host: host, port: port).wait()
        } catch {
            throw TransportError.unreachable("cannot connect to \(host):\(port): \(error)")
        }
        let connection = BlockingConnection(channel: channel, inbox: inbox, peer: "\(host):\(port)")
        connection.peerKey = expected
        // The handshake ends before the first byte; a refused key ends the connection.
        do {
            try inbox.waitUntilOpen()
        } catch {
            if case let .some(shown) = refused.withLockedValue({ $0 }) {
                throw TransportError.refusedPeer(address: "\(host):\(port)", fingerprint: shown?.description)
            }
            throw TransportError.unreachable("TLS with \(host):\(port) failed: \(error)")
        }
        return connection
    }

    /// Sends `bytes` as frames.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = min(Self.frameBytesMax, bytes.count - done)
            try send(UnsafeRawBufferPointer(rebasing: bytes[done..<(done + n)]))
            done += n
        }
    }

    /// Ends this direction's stream (the frame of length 0) and waits until everything is on
    /// the socket.
    public func finishWriting() throws {
        try send(UnsafeRawBufferPointer(start: nil, count: 0))
        try confirmAll()
    }

    /// Bytes as they are, outside any frame (tests forge headers with it).
    func sendRaw(_ bytes: [UInt8]) throws {
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        try channel.writeAndFlush(buffer).wait()
    }

    private func send(_ bytes: UnsafeRawBufferPointer) throws {
        var buffer = channel.allocator.buffer(capacity: 4 + bytes.count)
        buffer.writeInteger(UInt32(bytes.count), endianness: .little)
        buffer.writeBytes(bytes)
        newestWrite = channel.writeAndFlush(buffer)
        unconfirmedBytes += bytes.count + 4
        if unconfirmedBytes > Self.unconfirmedBytesMax { try confirmAll() }
    }

    /// Waits until everything written is on the socket.
    private func confirmAll() throws {
        defer { (newestWrite, unconfirmedBytes) = (nil, 0) }
        do {
            try newestWrite?.wait()
        } catch {
            throw TransportError.unreachable("the connection to \(peer) broke: \(error)")
        }
    }

    /// Reads up to `buffer.count` bytes of the peer's stream; 0 once it ended. A connection cut
    /// before the end is an error.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while !ended && frameLeft == 0 {
            var header = [UInt8](repeating: 0, count: 4)
            try header.withUnsafeMutableBytes { try inbox.readExactly(into: $0, peer: peer) }
            let length = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16 | Int(header[3]) << 24
            guard length <= Self.frameBytesMax else {
                throw TransportError.unreachable("\(peer) sent a frame of \(length) bytes (at most \(Self.frameBytesMax))")
            }
            if length == 0 { ended = true } else { frameLeft = length }
        }
        if ended || buffer.isEmpty { return 0 }
        let n = min(buffer.count, frameLeft)
        try inbox.readExactly(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n]), peer: peer)
        frameLeft -= n
        return n
    }

    /// Reads the peer's whole stream (at most `limit` bytes).
    public func readAll(limit: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        var piece = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = try piece.withUnsafeMutableBytes { try read(into: $0) }
            if n == 0 { return out }
            guard out.count + n <= limit else { throw TransportError.unreachable("\(peer) sent more than \(limit) bytes") }
            out += piece[0..<n]
        }
    }

    public func close() {
        try? channel.close().wait()
    }

    /// Closes without waiting (on the event loop, where waiting is not allowed).
    func abandon() { channel.close(promise: nil) }

    deinit { channel.close(promise: nil) }
}

/// Bytes received and not yet read, with the reader's wait and the connection's back-pressure.
final class Inbox: @unchecked Sendable {
    private let condition = NSCondition()
    private var pieces: [ByteBuffer] = []
    private var bytes = 0
    private var open = false
    private var failure: Error?
    private var closed = false
    weak var channel: Channel?

    /// Called on the event loop once the peer is accepted (then forgotten, as it is when the
    /// connection ends first, so it never keeps the connection alive).
    var onOpen: (() -> Void)?

    func opened() {
        condition.lock(); open = true; condition.broadcast(); condition.unlock()
        let call = onOpen
        onOpen = nil
        call?()
    }

    func push(_ b: ByteBuffer) {
        condition.lock()
        pieces.append(b)
        bytes += b.readableBytes
        let full = bytes >= BlockingConnection.bufferedBytesMax
        condition.broadcast()
        condition.unlock()
        if full { channel?.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in } }
    }

    func end(_ error: Error?) {
        onOpen = nil
        condition.lock()
        if failure == nil { failure = error }
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    func waitUntilOpen() throws {
        condition.lock()
        defer { condition.unlock() }
        while !open && !closed { condition.wait() }
        if !open { throw failure ?? TransportError.unreachable("the connection closed during the handshake") }
    }

    func readExactly(into buffer: UnsafeMutableRawBufferPointer, peer: String) throws {
        var done = 0
        condition.lock()
        defer { condition.unlock() }
        while done < buffer.count {
            while pieces.isEmpty && !closed { condition.wait() }
            guard !pieces.isEmpty else {
                throw TransportError.unreachable("the connection to \(peer) ended early\(failure.map { ": \($0)" } ?? "")")
            }
            let n = min(buffer.count - done, pieces[0].readableBytes)
            pieces[0].withUnsafeReadableBytes { UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + n)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
            pieces[0].moveReaderIndex(forwardBy: n)
            if pieces[0].readableBytes == 0 { pieces.removeFirst() }
            done += n
            bytes -= n
            if bytes < BlockingConnection.bufferedBytesMax / 2 { channel?.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in } }
        }
    }
}

/// The handlers after TLS: the idle timer (if any), then the inbox.
func addInbox(_ inbox: Inbox, to channel: Channel, idleSeconds: Int64?) throws {
    if let idleSeconds {
        try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: .seconds(idleSeconds)))
    }
    try channel.pipeline.syncOperations.addHandler(InboxHandler(inbox, idleSeconds: idleSeconds))
}

/// Hands a connection's bytes and its end to its Inbox.
final class InboxHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    private let inbox: Inbox
    private let idleSeconds: Int64?

    init(_ inbox: Inbox, idleSeconds: Int64? = nil) { (self.inbox, self.idleSeconds) = (inbox, idleSeconds) }

    func handlerAdded(context: ChannelHandlerContext) { inbox.channel = context.channel }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // The gate before this handler passes the handshake's end only for an accepted peer.
        if let e = event as? TLSUserEvent, case .handshakeCompleted = e { inbox.opened() }
        if event is IdleStateHandler.IdleStateEvent {
            inbox.end(TransportError.unreachable("nothing moved on the connection for \(idleSeconds ?? 0) s"))
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { inbox.push(unwrapInboundIn(data)) }
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        inbox.end(error)
        context.close(promise: nil)
    }
    func channelInactive(context: ChannelHandlerContext) { inbox.end(nil) }
}
