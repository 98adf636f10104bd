// One replication connection as the cycles use it: LinkMessages over a pinned-TLS
// BlockingConnection (docs/FORMAT.md, "Replication protocol"). The delta stream travels in DATA
// messages of up to 1 MiB, gathered here from the encoder's small writes and paced to the
// target's rate limit; the receiver reads it back as plain bytes for the applier.

import Foundation
import NIOPosix
import Replication
import Transport

final class ReplicationLink {
    let connection: BlockingConnection
    /// Bytes per second on the wire at most (nil: as fast as it goes).
    var rateBytesPerSecond: UInt64?
    /// The protocol version agreed in HELLO and WELCOME.
    private(set) var version = LinkProtocol.versionMax
    private var pending: [UInt8] = []
    private var sentBytes: UInt64 = 0
    private var receivedBytes: UInt64 = 0
    private let began = Date()
    /// What is left of the DATA message being read, and whether END came.
    private var dataLeft = 0
    private var ended = false

    /// The event loop of every replication connection of this process.
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    /// Seconds without traffic after which a connection counts as broken: ZUMASTOR_LINK_IDLE_SECONDS, else 120.
    static var idleSeconds: Int64 {
        ProcessInfo.processInfo.environment["ZUMASTOR_LINK_IDLE_SECONDS"].flatMap { Int64($0) }.map { max(1, $0) } ?? 120
    }

    init(_ connection: BlockingConnection) { self.connection = connection }

    var peer: String { connection.peer }
    var peerKey: KeyFingerprint? { connection.peerKey }

    /// Connects to `endpoint` (whose key must be `key`) and opens a cycle: HELLO, then the
    /// peer's WELCOME (or its refusal, thrown with its reason).
    static func open(_ endpoint: Endpoint, key: KeyFingerprint, tls: PinnedTLS, role: LinkRole, volume: String, peerVolume: String) throws -> ReplicationLink {
        let connection = try BlockingConnection.connect(host: endpoint.host, port: endpoint.port, tls: tls, expected: key,
                                                        group: group, timeoutSeconds: 20, idleSeconds: idleSeconds)
        let link = ReplicationLink(connection)
        do {
            try link.send(.hello(versionMin: LinkProtocol.versionMin, versionMax: LinkProtocol.versionMax, role: role, volume: volume, peerVolume: peerVolume))
            switch try link.receive() {
            case let .welcome(v) where (LinkProtocol.versionMin...LinkProtocol.versionMax).contains(v):
                link.version = v
            case let .welcome(v):
                throw LinkError.unexpected("\(endpoint) chose protocol version \(v), which this host does not speak")
            case let .refuse(reason):
                throw LinkError.refused("\(endpoint) refused: \(reason)")
            case let other:
                throw LinkError.unexpected("\(endpoint) answered HELLO with \(other.name)")
            }
        } catch {
            connection.close()
            throw error
        }
        return link
    }

    /// The listener's side of HELLO: the version both speak, or a refusal sent and thrown.
    func answerHello(versionMin lo: UInt16, versionMax hi: UInt16) throws {
        let v = min(hi, LinkProtocol.versionMax)
        guard v >= lo, v >= LinkProtocol.versionMin else {
            try? refuse("this host speaks replication protocol versions \(LinkProtocol.versionMin) to \(LinkProtocol.versionMax), the peer \(lo) to \(hi)")
            throw LinkError.refused("the peer speaks protocol versions \(lo) to \(hi) only")
        }
        version = v
        try send(.welcome(version: v))
    }

    func send(_ m: LinkMessage) throws {
        try flushData()
        try m.encoded().withUnsafeBytes { try put($0) }
    }

    /// Refuses the cycle with `reason` (and ends this side of the connection).
    func refuse(_ reason: String) throws {
        try send(.refuse(reason))
        try connection.finishWriting()
    }

    /// Stream bytes, sent in DATA messages of up to 1 MiB; at least 64 KiB go as soon as 20 ms
    /// passed since the last message, so that a receiver works while a slow encoder (many
    /// small records) goes on.
    func sendData(_ bytes: UnsafeRawBufferPointer) throws {
        var at = 0
        while at < bytes.count {
            let n = min(LinkProtocol.dataBytesMax - pending.count, bytes.count - at)
            pending += UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)])
            at += n
            if pending.count == LinkProtocol.dataBytesMax { try flushData() }
        }
        if pending.count >= Self.earlyDataBytes && DispatchTime.now().uptimeNanoseconds - lastData >= Self.earlyDataNanoseconds {
            try flushData()
        }
    }

    static let earlyDataBytes = 64 << 10
    static let earlyDataNanoseconds: UInt64 = 20_000_000
    private var lastData = DispatchTime.now().uptimeNanoseconds

    private func flushData() throws {
        guard !pending.isEmpty else { return }
        let header = LinkMessage.dataHeader(count: pending.count)
        try (header + pending).withUnsafeBytes { try put($0) }
        pending.removeAll(keepingCapacity: true)
        lastData = DispatchTime.now().uptimeNanoseconds
    }

    /// Writes, then waits as long as the rate limit wants.
    private func put(_ bytes: UnsafeRawBufferPointer) throws {
        try connection.write(bytes)
        sentBytes += UInt64(bytes.count)
        if let rate = rateBytesPerSecond, rate > 0 {
            let due = Double(sentBytes) / Double(rate) - Date().timeIntervalSince(began)
            if due > 0 { usleep(useconds_t(min(due, 10) * 1_000_000)) }
        }
    }

    /// Bytes put on the wire so far (message headers included).
    var bytesSent: UInt64 { sentBytes }
    /// Bytes taken off the wire so far (message headers included).
    var bytesReceived: UInt64 { receivedBytes }

    /// The next whole message.
    func receive() throws -> LinkMessage {
        let (type, length) = try readPrefix()
        return try readBody(type: type, length: length)
    }

    /// A message's type and body length.
    private func readPrefix() throws -> (type: UInt8, length: Int) {
        var prefix = [UInt8](repeating: 0, count: 5)
        try readExactly(&prefix)
        return (prefix[4], Int(prefix[0]) | Int(prefix[1]) << 8 | Int(prefix[2]) << 16 | Int(prefix[3]) << 24)
    }

    private func readBody(type: UInt8, length: Int) throws -> LinkMessage {
        guard length <= LinkProtocol.bodyBytesMax else { throw LinkError.malformed("a message of \(length) bytes (at most \(LinkProtocol.bodyBytesMax))") }
        var body = [UInt8](repeating: 0, count: length)
        try readExactly(&body)
        return try LinkMessage.decode(type: type, body: body)
    }

    private func readExactly(_ buffer: inout [UInt8]) throws {
        var done = 0
        while done < buffer.count {
            let n = try buffer.withUnsafeMutableBytes { try connection.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[done...])) }
            guard n > 0 else { throw TransportError.unreachable("\(peer) ended the connection in the middle of a message") }
            done += n
            receivedBytes += UInt64(n)
        }
    }

    /// The delta stream's bytes, read from DATA messages straight into `buffer`; 0 at END.
    /// A refusal or any other message ends it with an error.
    func readStream(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while dataLeft == 0 {
            if ended { return 0 }
            let (type, length) = try readPrefix()
            if type == LinkMessage.Kind.data.rawValue {
                guard length <= LinkProtocol.dataBytesMax else { throw LinkError.malformed("DATA of \(length) bytes") }
                dataLeft = length
                continue
            }
            switch try readBody(type: type, length: length) {
            case .end: ended = true
            case let .refuse(reason): throw LinkError.refused("\(peer) stopped the transfer: \(reason)")
            case let other: throw LinkError.unexpected("\(other.name) in the middle of the stream")
            }
        }
        let n = min(buffer.count, dataLeft)
        var done = 0
        while done < n {
            let got = try connection.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<n]))
            guard got > 0 else { throw TransportError.unreachable("\(peer) ended the connection in the middle of the stream") }
            done += got
            receivedBytes += UInt64(got)
        }
        dataLeft -= n
        return n
    }

    func close() { connection.close() }
}

extension LinkMessage {
    /// Its type, for messages.
    var name: String {
        switch self {
        case .hello: return "HELLO"
        case .welcome: return "WELCOME"
        case .refuse: return "REFUSE"
        case .offer: return "OFFER"
        case .start: return "START"
        case .data: return "DATA"
        case .end: return "END"
        case .done: return "DONE"
        }
    }
}
