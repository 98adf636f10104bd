// The server side of the control socket. NIO accepts connections and cuts frames; each
// connection then has one worker thread that takes its frames in order and runs requests
// against the host (blocking store calls never run on an event loop). A malformed message
// gets a failure reply and the connection goes on; a malformed frame gets a failure reply
// and the connection is closed (its stream can no longer be trusted). Either way the server
// keeps serving everyone else.

import Foundation
import Logging
import NIOCore
import NIOPosix
import SnapStore
import VolumeInterface

/// What the control socket can ask of the server beyond the store itself.
protocol ServerOperations: AnyObject, Sendable {
    var info: ServerInfo { get }
    func attach(tag: UInt64?, writable: Bool) throws -> AttachedDevice
    func detach(tag: UInt64?) throws -> AttachedDevice
    func devices() -> [AttachedDevice]
    /// The origin's size changed: an attached loop device re-reads it.
    func originResized()
}

struct ControlFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ControlFrame

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let header = buffer.getBytes(at: buffer.readerIndex, length: ControlFrame.headerBytes) else { return .needMoreData }
        let (kind, count) = try ControlFrame.payloadLength(header: header)
        guard buffer.readableBytes >= ControlFrame.headerBytes + count else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: ControlFrame.headerBytes)
        let payload = buffer.readBytes(length: count)!
        context.fireChannelRead(wrapInboundOut(try ControlFrame.make(kind: kind, payload: payload)))
        return .continue
    }
}

/// Frames handed from the event loop to a connection's worker.
final class FrameQueue: @unchecked Sendable {
    enum Item {
        case frame(ControlFrame)
        case broken(Error)
    }
    private let condition = NSCondition()
    private var items: [Item] = []
    private var closed = false

    func push(_ item: Item) {
        condition.lock()
        items.append(item)
        condition.signal()
        condition.unlock()
    }

    func close() {
        condition.lock()
        closed = true
        condition.broadcast()
        condition.unlock()
    }

    /// The next item; nil once the connection is gone and everything was taken.
    func pop() -> Item? {
        condition.lock()
        defer { condition.unlock() }
        while items.isEmpty && !closed { condition.wait() }
        return items.isEmpty ? nil : items.removeFirst()
    }

    var count: Int {
        condition.lock()
        defer { condition.unlock() }
        return items.count
    }
}

final class ControlConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ControlFrame

    private let host: VolumeHost
    private let server: ServerOperations
    private let logger: Logger
    private let queue = FrameQueue()
    /// Frames queued before the connection stops reading (it reads again at half). The worker
    /// waits for each reply to be written, so a client that sends without reading replies
    /// holds at most this many frames, the frame being cut (1 MiB + 4 KiB), and what one read
    /// event already took (`ControlListener.readsPerEvent` × `readBytesMax`).
    private let queuedFramesMax = 8
    private var channel: Channel?

    init(host: VolumeHost, server: ServerOperations, logger: Logger) {
        self.host = host
        self.server = server
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        channel = context.channel
        let thread = Thread { [self] in serve() }
        thread.name = "control"
        thread.start()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        queue.push(.frame(unwrapInboundIn(data)))
        if queue.count >= queuedFramesMax { context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in } }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        queue.push(.broken(error))
    }

    func channelInactive(context: ChannelHandlerContext) {
        queue.close()
        context.fireChannelInactive()
    }

    // MARK: The worker

    private func next() -> ControlQueueItem {
        guard let item = queue.pop() else { return .gone }
        if queue.count < queuedFramesMax / 2, let channel {
            channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        }
        switch item {
        case let .frame(f): return .frame(f)
        case let .broken(e): return .broken(e)
        }
    }

    private enum ControlQueueItem {
        case frame(ControlFrame)
        case broken(Error)
        case gone
    }

    private func serve() {
        while true {
            let item: ControlQueueItem
            if let m = pendingRequest {
                pendingRequest = nil
                item = .frame(.message(m))
            } else {
                item = next()
            }
            switch item {
            case .gone:
                return
            case let .broken(error):
                logger.warning("control connection: \(error); closing it")
                reply(.failed(ControlFailure(error)))
                _ = try? channel?.close().wait()
                return
            case .frame(.data), .frame(.end):
                reply(.failed(.volume(.protocolViolation("a data frame outside a write request"))))
            case let .frame(.message(bytes)):
                let request: ControlRequest
                do {
                    request = try ControlCoding.decode(ControlRequest.self, from: bytes)
                } catch {
                    let explained = explainVersion(error)
                    logger.warning("control connection: \(explained)")
                    reply(.failed(ControlFailure(explained)))
                    continue
                }
                if !handle(request) { return }
            }
        }
    }

    /// A request this server cannot read from a client of another protocol version says so
    /// (the "malformed request" prefix kept, which a newer client explains in turn).
    private func explainVersion(_ error: Error) -> Error {
        guard case let VolumeError.protocolViolation(text) = error, let client = clientVersion, client != ControlProtocol.version else { return error }
        return VolumeError.protocolViolation("\(text) (the client speaks control protocol \(client), this server \(ControlProtocol.version), zumastor \(ControlProtocol.release): use the same version of both; a server started before an upgrade needs a restart)")
    }

    /// Runs one request; false when the connection went away in the middle.
    private func handle(_ request: ControlRequest) -> Bool {
        dataEnded = false
        do {
            let result = try perform(request)
            reply(.ok(result))
        } catch ConnectionGone.gone {
            return false
        } catch {
            switch request {
            case .write, .writeExtents: if !dataEnded && !drainWrite() { return false }
            default: break
            }
            logger.info("request \(request.name) failed: \(error)")
            reply(.failed(ControlFailure(error)))
        }
        return true
    }

    private enum ConnectionGone: Error { case gone }
    /// The request being handled took its end frame already: a failure has nothing to drain.
    private var dataEnded = false
    /// A request that arrived where a write's data or end frame was expected: the write fails,
    /// then this request is served (not dropped).
    private var pendingRequest: [UInt8]?
    /// The control protocol the client said it speaks in `hello` (nil: no hello yet).
    private var clientVersion: Int?

    /// One request, one line each: the store's answers come from the host, the server's own
    /// from `server`; the streaming requests have functions of their own below.
    private func perform(_ request: ControlRequest) throws -> ControlResult {
        switch request {
        case let .hello(client):
            clientVersion = client ?? 1
            return .server(server.info)
        case .status: return .status(try host.status())
        case .list: return .snapshots(try host.snapshots())
        case let .snapshot(tag): return .snapshot(try host.snapshot(tag: tag))
        case let .create(tag, name, priority, created):
            return .snapshot(noted(try host.createSnapshot(tag: tag, name: name, priority: priority, createdNanoseconds: created)) { _ in "created snapshot \(tag)" })
        case let .delete(tag): return .count(noted(try host.deleteSnapshot(tag: tag)) { "deleted snapshot \(tag), freed \($0) chunks" })
        case let .usecount(tag, delta): return .usecount(try host.adjustUsecount(tag: tag, by: delta))
        case let .priority(tag, priority): try host.setPriority(tag: tag, priority); return .none
        case let .usage(tag): return .usage(try host.usage(tag: tag))
        case let .read(snapshot, offset, length): return try sendRead(snapshot: snapshot, offset: offset, length: length)
        case let .readRanges(snapshot, pairs): return try sendRanges(snapshot: snapshot, pairs: pairs)
        case .flush: try host.flush(); return .none
        case let .write(snapshot, offset, flush): return try receiveWrite(snapshot: snapshot, offset: offset, flush: flush ?? true)
        case let .writeExtents(pairs): return try receiveExtents(pairs)
        case let .dataRanges(snapshot, first, end):
            guard first <= end else { throw VolumeError.protocolViolation("chunk range \(first)..<\(end)") }
            return .ranges(try host.dataRanges(snapshot: snapshot, chunks: first..<end).map { [$0.lowerBound, $0.upperBound] })
        case let .adoptUUID(text):
            guard let uuid = parseUUID(text) else { throw VolumeError.protocolViolation("'\(text)' is not a UUID") }
            try host.adoptVolumeUUID(uuid)
            logger.info("the store is now a replica of volume \(text)")
            return .none
        case let .changelist(from, to, start, limit): return try sendChangelist(from: from, to: to, start: start ?? 0, limit: limit)
        case let .revert(tag): return .count(UInt64(noted(try host.revert(to: tag)) { "reverted the origin to snapshot \(tag) (\($0) chunks)" }))
        case let .resizeOrigin(bytes):
            let status = noted(try host.resizeOrigin(to: bytes)) { _ in "origin resized to \(bytes) bytes" }
            server.originResized()
            return .status(status)
        case let .resizeStore(bytes): return .status(noted(try host.resizeStore(to: bytes)) { _ in "store resized to \(bytes) bytes" })
        case let .check(repair): return .check(try host.check(repair: repair))
        case let .attach(tag, writable): return .device(try server.attach(tag: tag, writable: writable))
        case let .detach(tag): return .device(try server.detach(tag: tag))
        case .devices: return .devices(server.devices())
        case .metrics:
            guard let metrics = host.metrics else { throw VolumeError.invalidArgument("this server keeps no metrics") }
            return .text(metrics.render(try? host.status()))
        }
    }

    /// Logs what a request changed, and passes its value on.
    private func noted<Value>(_ value: Value, _ message: (Value) -> String) -> Value {
        logger.info("\(message(value))")
        return value
    }

    private func sendRead(snapshot: UInt64?, offset: UInt64, length: UInt64?) throws -> ControlResult {
        let total = try host.readLength(snapshot: snapshot, offset: offset, length: length)
        try streamData { try sendRange(snapshot: snapshot, offset: offset, length: total) }
        return .none
    }

    private func sendRanges(snapshot: UInt64?, pairs: [[UInt64]]) throws -> ControlResult {
        let ranges = try pairs.map { p -> (offset: UInt64, length: Int) in
            guard p.count == 2, p[1] <= readRangesBytesMax else {
                throw VolumeError.protocolViolation("a read range is not an [offset, length] pair of at most \(readRangesBytesMax) bytes")
            }
            return (p[0], Int(p[1]))
        }
        try checkReadRanges(ranges)
        try streamData {
            for r in ranges { try sendRange(snapshot: snapshot, offset: r.offset, length: UInt64(r.length)) }
        }
        return .none
    }

    /// A write's data frames, up to its end frame, into the origin or a snapshot.
    private func receiveWrite(snapshot: UInt64?, offset: UInt64, flush: Bool) throws -> ControlResult {
        var finished = false
        let written = try host.write(snapshot: snapshot, offset: offset, flush: flush) { buffer in
            if finished { return 0 }
            switch next() {
            case .gone: throw ConnectionGone.gone
            case let .broken(e): throw e
            case .frame(.end):
                finished = true
                dataEnded = true
                return 0
            case let .frame(.data(bytes)):
                guard bytes.count <= buffer.count else {
                    throw VolumeError.protocolViolation("data frame of \(bytes.count) bytes is larger than \(buffer.count)")
                }
                bytes.withUnsafeBytes { buffer.copyMemory(from: $0) }
                return bytes.count
            case let .frame(.message(bytes)):
                pendingRequest = bytes
                dataEnded = true
                throw VolumeError.protocolViolation("a request arrived in the middle of a write's data")
            }
        }
        if !finished { _ = drainWrite() }
        logger.info("wrote \(written) bytes at \(offset) of \(snapshot.map { "snapshot \($0)" } ?? "the origin")")
        return .count(written)
    }

    /// Where a `writeExtents` request's bytes gather before they go to the store together.
    private var extentBytes: [UInt8] = []

    /// A batched origin write: the extents' bytes from the data frames, up to the end frame,
    /// then one store call (one commit for every copy-out they need).
    private func receiveExtents(_ pairs: [[UInt64]]) throws -> ControlResult {
        guard pairs.count <= writeExtentsCountMax else {
            throw VolumeError.protocolViolation("\(pairs.count) extents in one write: at most \(writeExtentsCountMax)")
        }
        var total = 0
        for p in pairs {
            guard p.count == 2, p[1] > 0, p[1] <= UInt64(writeExtentsBytesMax - total), p[0] <= UInt64.max - p[1] else {
                throw VolumeError.protocolViolation("an extent is not an [offset, length] pair, or the extents pass \(writeExtentsBytesMax) bytes in all")
            }
            total += Int(p[1])
        }
        if extentBytes.count < total { extentBytes = [UInt8](repeating: 0, count: total) }
        var filled = 0
        receiving: while true {
            switch next() {
            case .gone: throw ConnectionGone.gone
            case let .broken(e): throw e
            case .frame(.end):
                dataEnded = true
                break receiving
            case let .frame(.data(bytes)):
                guard bytes.count <= total - filled else {
                    throw VolumeError.protocolViolation("the data frames carry more than the extents' \(total) bytes")
                }
                extentBytes.replaceSubrange(filled..<(filled + bytes.count), with: bytes)
                filled += bytes.count
            case let .frame(.message(bytes)):
                pendingRequest = bytes
                dataEnded = true
                throw VolumeError.protocolViolation("a request arrived in the middle of a write's data")
            }
        }
        guard filled == total else {
            throw VolumeError.protocolViolation("the data frames carry \(filled) of the extents' \(total) bytes")
        }
        try extentBytes.withUnsafeBytes { b in
            var at = 0
            let extents = pairs.map { p -> (offset: UInt64, data: UnsafeRawBufferPointer) in
                defer { at += Int(p[1]) }
                return (p[0], UnsafeRawBufferPointer(rebasing: b[at..<(at + Int(p[1]))]))
            }
            try host.write(originExtents: extents)
        }
        logger.info("wrote \(total) bytes of the origin in \(pairs.count) extents")
        return .none
    }

    /// The changed chunks as data frames of u64 LE chunk numbers.
    private func sendChangelist(from: StoreSide, to: StoreSide, start: UInt64, limit: UInt64?) throws -> ControlResult {
        var piece: [UInt8] = []
        piece.reserveCapacity(streamPieceBytes)
        try host.changedChunks(from: from, to: to, startingAt: start, limit: limit) { chunk in
            for b in 0..<8 { piece.append(UInt8(truncatingIfNeeded: chunk >> (8 * UInt64(b)))) }
            if piece.count >= streamPieceBytes {
                try send(.data(piece))
                piece.removeAll(keepingCapacity: true)
            }
        }
        if !piece.isEmpty { try send(.data(piece)) }
        return .none
    }

    /// Skips the rest of a failed write's data, up to its end frame (or a request, served
    /// next); false if the connection went.
    private func drainWrite() -> Bool {
        while true {
            switch next() {
            case .gone, .broken: return false
            case .frame(.end): return true
            case .frame(.data): continue
            case let .frame(.message(bytes)):
                pendingRequest = bytes
                return true
            }
        }
    }

    private func send(_ frame: ControlFrame) throws {
        guard let channel else { throw ConnectionGone.gone }
        let bytes = frame.encoded()
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        do {
            try channel.writeAndFlush(buffer).wait()
        } catch {
            throw ConnectionGone.gone
        }
    }

    /// Data frames handed to the event loop and not yet written: a read runs ahead of the
    /// socket by at most `unconfirmedBytesMax` instead of waiting for every frame.
    private var unconfirmed: [(write: EventLoopFuture<Void>, bytes: Int)] = []
    private var unconfirmedBytes = 0
    private static let unconfirmedBytesMax = 4 << 20

    /// Runs `body`, which sends data frames, then waits until they are all written (also when
    /// it fails, before the failure is replied).
    private func streamData(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch {
            try? confirmData()
            throw error
        }
        try confirmData()
    }

    /// Bytes [offset, offset + length) of the origin or a snapshot as data frames, each read
    /// from the store straight into the channel's buffer that carries it.
    private func sendRange(snapshot: UInt64?, offset: UInt64, length: UInt64) throws {
        var done: UInt64 = 0
        while done < length {
            let n = Int(min(UInt64(streamPieceBytes), length - done))
            try sendData(count: n) { try host.read(snapshot: snapshot, offset: offset + done, into: $0) }
            done += UInt64(n)
        }
    }

    /// A data frame of `count` bytes, which `fill` writes into the channel's buffer.
    private func sendData(count: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) throws {
        guard let channel else { throw ConnectionGone.gone }
        var buffer = channel.allocator.buffer(capacity: ControlFrame.headerBytes + count)
        buffer.writeBytes(ControlFrame.header(kind: ControlFrame.dataKind, payloadCount: count))
        try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { b in
            try fill(UnsafeMutableRawBufferPointer(rebasing: b[0..<count]))
            return count
        }
        unconfirmed.append((channel.writeAndFlush(buffer), count))
        unconfirmedBytes += count
        while unconfirmedBytes > Self.unconfirmedBytesMax { try confirmOldest() }
    }

    /// Waits until every data frame is written.
    private func confirmData() throws {
        while !unconfirmed.isEmpty { try confirmOldest() }
    }

    private func confirmOldest() throws {
        let (write, bytes) = unconfirmed.removeFirst()
        unconfirmedBytes -= bytes
        do {
            try write.wait()
        } catch {
            unconfirmed.removeAll()
            unconfirmedBytes = 0
            throw ConnectionGone.gone
        }
    }

    private func reply(_ reply: ControlReply) {
        try? send(.message(ControlCoding.encode(reply)))
    }
}

/// Listens on the control socket (owner-only permissions).
final class ControlListener {
    let channel: Channel
    /// Control connections open at once, each with its worker thread (docs/INVARIANTS.md 36).
    static let connectionsMax = 32
    private let limit = ConnectionLimit(maximum: ControlListener.connectionsMax, what: "control")
    /// Reads per readable event, and the most bytes one read takes.
    static let readsPerEvent: UInt = 4
    static let readBytesMax = 64 << 10

    init(path: String, group: EventLoopGroup, host: VolumeHost, server: ServerOperations, logger: Logger) throws {
        let limit = self.limit
        // A socket file left by a server that died is replaced; a live server's is not
        // (the store lock, taken before, says nobody else serves this store).
        unlink(path)
        let oldMask = umask(0o077)
        defer { umask(oldMask) }
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 64)
            // What one read event may bring past the queue's pause (docs/INVARIANTS.md 36).
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: ControlListener.readsPerEvent)
            .childChannelOption(ChannelOptions.recvAllocator,
                                value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: ControlListener.readBytesMax))
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    guard limit.admit(channel, logger: logger) else { return }
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ControlFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(ControlConnectionHandler(host: host, server: server, logger: logger))
                }
            }
        do {
            channel = try bootstrap.bind(unixDomainSocketPath: path).wait()
        } catch {
            throw VolumeError.system("cannot listen on control socket \(path): \(error)")
        }
        chmod(path, 0o600)
    }

    func close() {
        _ = try? channel.close().wait()
    }
}
