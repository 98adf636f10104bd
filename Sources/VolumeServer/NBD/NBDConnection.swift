// One NBD client connection: the fixed newstyle option haggling (EXPORT_NAME, ABORT, LIST,
// INFO, GO, STRUCTURED_REPLY), then the transmission phase. Requests run on the server's
// thread pool (store calls block) and are answered as they complete, matched by cookie.
// The event loop only parses, checks and replies.
//
// On a TCP listener given TLS files (NBDTLSConfiguration) TLS is required: every option but
// STARTTLS and ABORT is refused until the client started TLS, and what was said before it
// is forgotten. On the Unix socket (root's alone) TLS is not offered.
//
// Exports: "<vol>" (and the empty default name) is the origin, read-write; "<vol>@<tag>" a
// snapshot, read-only unless the snapshot was made writable. An open export is an open of
// its device: the snapshot is in use until the connection ends.

import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import SnapStore
import VolumeInterface

/// What the connections of one server share.
final class NBDContext: Sendable {
    let volume: String
    let host: VolumeHost
    /// Where store work runs; nil: on the event loop itself (an embedded channel in tests and
    /// the fuzzer, whose loop no other thread may touch).
    let pool: NIOThreadPool?
    let logger: Logger
    /// NBD connections open at once, over every listener (docs/INVARIANTS.md 36).
    static let connectionsMax = 32
    let connections = ConnectionLimit(maximum: NBDContext.connectionsMax, what: "NBD")

    init(volume: String, host: VolumeHost, pool: NIOThreadPool?, logger: Logger) {
        (self.volume, self.host, self.pool, self.logger) = (volume, host, pool, logger)
    }

    /// The export a name stands for: nil (origin) or a tag; throws a message when there is none.
    func resolve(_ name: String) -> Result<UInt64?, NBDExportError> {
        if name.isEmpty || name == volume { return .success(nil) }
        let prefix = volume + "@"
        guard name.hasPrefix(prefix), let tag = UInt64(name.dropFirst(prefix.count)), String(tag) == name.dropFirst(prefix.count) else {
            return .failure(NBDExportError(message: "no export named '\(name)' (exports: \(volume) and \(volume)@TAG)"))
        }
        guard (try? host.snapshot(tag: tag)) != nil else {
            return .failure(NBDExportError(message: "snapshot \(tag) of \(volume) doesn't exist"))
        }
        return .success(tag)
    }

    func exportNames() -> [String] {
        [volume] + ((try? host.snapshots()) ?? []).map { "\(volume)@\($0.tag)" }
    }
}

struct NBDExportError: Error {
    let message: String
}

final class NBDConnectionHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = NBDInbound
    typealias OutboundOut = ByteBuffer

    private let shared: NBDContext
    /// TLS offered (and then required) on this connection; nil: not offered.
    private let tls: NBDTLSConfiguration?
    private var tlsStarted = false
    private var tlsAccepted = false
    private var noZeroes = false
    private var structuredReplies = false
    private var transmitting = false
    /// The export once chosen: (tag or nil for the origin, size, read-only).
    private var export: (tag: UInt64?, size: UInt64, readOnly: Bool)?
    private var inFlight = 0
    /// Bytes of the requests in flight (write payloads held, read replies to build).
    private var inFlightBytes = 0
    private var disconnecting = false
    private var readingPaused = false
    /// At most this many requests and bytes in flight per connection; past either, the
    /// connection stops reading until half are answered (docs/INVARIANTS.md 36).
    private let inFlightMax = 64
    static let inFlightBytesMax = 32 << 20
    private var peer = "?"

    init(context: NBDContext, tls: NBDTLSConfiguration?) { (shared, self.tls) = (context, tls) }

    // MARK: Handshake

    /// A client has this long from connecting to choosing an export (TLS included); then the
    /// connection is closed, so that idle or stalled handshakes cannot hold the connection slots.
    static let handshakeTimeout = TimeAmount.seconds(30)
    private var handshakeDeadline: Scheduled<Void>?

    func channelActive(context: ChannelHandlerContext) {
        peer = context.channel.remoteAddress.map { "\($0)" } ?? "unix socket"
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        handshakeDeadline = context.eventLoop.scheduleTask(in: Self.handshakeTimeout) { [self] in
            guard !transmitting else { return }
            protocolError(bound.value, "no export chosen within \(Self.handshakeTimeout.nanoseconds / 1_000_000_000) s of connecting")
        }
        var out = context.channel.allocator.buffer(capacity: 18)
        out.writeInteger(NBD.initMagic)
        out.writeInteger(NBD.optionMagic)
        out.writeInteger(NBD.flagFixedNewstyle | NBD.flagNoZeroes)
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        handshakeDeadline?.cancel()
        if let export, transmitting {
            shared.host.close(snapshot: export.tag)
            transmitting = false
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if tlsStarted, !tlsAccepted, error is NIOSSLError {
            shared.logger.warning("NBD client \(peer): TLS handshake refused (no certificate of this server's authority, or a wrong one): \(error)")
            return context.close(promise: nil)
        }
        shared.logger.warning("NBD client \(peer): \(error); closing the connection")
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case let .clientFlags(flags):
            guard flags & ~(NBD.clientFlagFixedNewstyle | NBD.clientFlagNoZeroes) == 0 else {
                shared.logger.warning("NBD client \(peer) sent unknown client flags 0x\(String(flags, radix: 16)); closing")
                context.close(promise: nil)
                return
            }
            noZeroes = flags & NBD.clientFlagNoZeroes != 0
        case let .option(code, data):
            guard !transmitting else { return protocolError(context, "an option during the transmission phase") }
            if tls != nil && !tlsStarted && code != NBD.optStartTLS && code != NBD.optAbort {
                if code == NBD.optExportName {
                    // EXPORT_NAME cannot be answered with an error: the session ends.
                    return protocolError(context, "EXPORT_NAME without TLS, which this listener requires")
                }
                return optionReply(context, code, NBD.repErrTLSRequired, message: "TLS is required on this address: start it with STARTTLS (an nbds:// URI)")
            }
            handleOption(context, code: code, data: data)
        case let .oversizedOption(code, length):
            guard !transmitting else { return protocolError(context, "an option during the transmission phase") }
            optionReply(context, code, NBD.repErrTooBig, message: "option data of \(length) bytes is larger than \(NBD.optionBytesMax)")
        case let .request(request, payload):
            guard transmitting else { return protocolError(context, "a request before an export was chosen") }
            handleRequest(context, request, payload)
        }
    }

    private func protocolError(_ context: ChannelHandlerContext, _ what: String) {
        shared.logger.warning("NBD client \(peer): \(what); closing the connection")
        context.close(promise: nil)
    }

    private func handleOption(_ context: ChannelHandlerContext, code: UInt32, data: ByteBuffer) {
        switch code {
        case NBD.optExportName: exportName(context, data)
        case NBD.optAbort:
            optionReply(context, code, NBD.repAck)
            context.close(promise: nil)
        case NBD.optList:
            guard data.readableBytes == 0 else {
                return optionReply(context, code, NBD.repErrInvalid, message: "LIST takes no data")
            }
            for name in shared.exportNames() {
                var payload = context.channel.allocator.buffer(capacity: 4 + name.utf8.count)
                payload.writeInteger(UInt32(name.utf8.count))
                payload.writeString(name)
                optionReply(context, code, NBD.repServer, payload: payload, flush: false)
            }
            optionReply(context, code, NBD.repAck)
        case NBD.optStructuredReply:
            guard data.readableBytes == 0 else {
                return optionReply(context, code, NBD.repErrInvalid, message: "STRUCTURED_REPLY takes no data")
            }
            structuredReplies = true
            optionReply(context, code, NBD.repAck)
        case NBD.optInfo, NBD.optGo: infoOrGo(context, code, data)
        case NBD.optStartTLS: startTLS(context, data)
        default:
            optionReply(context, code, NBD.repErrUnsupported, message: "option \(code) is not supported")
        }
    }

    /// STARTTLS: the acknowledgement in plain text, then TLS under everything that follows.
    /// The decoder has made sure no plain bytes came after the option (they would otherwise
    /// be read as if they came through TLS).
    private func startTLS(_ context: ChannelHandlerContext, _ data: ByteBuffer) {
        guard let tls else {
            return optionReply(context, NBD.optStartTLS, NBD.repErrPolicy, message: "TLS is not offered on this socket")
        }
        guard !tlsStarted else { return optionReply(context, NBD.optStartTLS, NBD.repErrInvalid, message: "TLS is already on") }
        guard data.readableBytes == 0 else { return optionReply(context, NBD.optStartTLS, NBD.repErrInvalid, message: "STARTTLS takes no data") }
        optionReply(context, NBD.optStartTLS, NBD.repAck)
        tlsStarted = true
        // No option negotiated in plain text carries over (the handshake's flags do: they are
        // not sent again).
        structuredReplies = false
        do {
            try context.pipeline.syncOperations.addHandler(tls.serverHandler(), position: .first)
        } catch {
            protocolError(context, "cannot start TLS: \(error)")
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? TLSUserEvent, case .handshakeCompleted = e {
            tlsAccepted = true
            shared.logger.info("NBD client \(peer): TLS started, client certificate accepted")
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// EXPORT_NAME: the old way to choose an export, which cannot carry an error.
    private func exportName(_ context: ChannelHandlerContext, _ data: ByteBuffer) {
        var data = data
        let name = data.readString(length: data.readableBytes) ?? ""
        switch shared.resolve(name) {
        case let .failure(e):
            // The protocol says to end the session.
            shared.logger.info("NBD client \(peer) asked for export '\(name)': \(e.message); closing")
            context.close(promise: nil)
        case let .success(tag):
            guard let (size, flags) = begin(tag: tag) else { return context.close(promise: nil) }
            var out = context.channel.allocator.buffer(capacity: 134)
            out.writeInteger(size)
            out.writeInteger(flags)
            if !noZeroes { out.writeRepeatingByte(0, count: 124) }
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        }
    }

    /// INFO and GO: the export's information replies; GO then enters transmission.
    private func infoOrGo(_ context: ChannelHandlerContext, _ code: UInt32, _ data: ByteBuffer) {
        var data = data
        guard let nameLength = data.readInteger(as: UInt32.self), nameLength <= data.readableBytes,
              let name = data.readString(length: Int(nameLength)), let count = data.readInteger(as: UInt16.self),
              data.readableBytes == Int(count) * 2 else {
            return optionReply(context, code, NBD.repErrInvalid, message: "malformed \(code == NBD.optGo ? "GO" : "INFO") option")
        }
        var wanted: Set<UInt16> = []
        for _ in 0..<count { wanted.insert(data.readInteger(as: UInt16.self)!) }
        let tag: UInt64?
        switch shared.resolve(name) {
        case let .failure(e): return optionReply(context, code, NBD.repErrUnknown, message: e.message)
        case let .success(t): tag = t
        }
        guard let size = shared.host.sizeBytes(snapshot: tag) else {
            return optionReply(context, code, NBD.repErrUnknown, message: "export '\(name)' went away")
        }
        var info = context.channel.allocator.buffer(capacity: 12)
        info.writeInteger(NBD.infoExport)
        info.writeInteger(size)
        info.writeInteger(transmissionFlags(readOnly: isReadOnly(tag)))
        optionReply(context, code, NBD.repInfo, payload: info, flush: false)
        var blocks = context.channel.allocator.buffer(capacity: 14)
        blocks.writeInteger(NBD.infoBlockSize)
        blocks.writeInteger(UInt32(1))
        blocks.writeInteger(NBD.preferredBlockBytes)
        blocks.writeInteger(UInt32(NBD.requestBytesMax))
        optionReply(context, code, NBD.repInfo, payload: blocks, flush: false)
        if wanted.contains(NBD.infoName) { infoText(context, code, NBD.infoName, name) }
        if wanted.contains(NBD.infoDescription) {
            infoText(context, code, NBD.infoDescription, tag.map { "snapshot \($0) of volume \(shared.volume)" } ?? "volume \(shared.volume)")
        }
        if code == NBD.optGo {
            guard begin(tag: tag) != nil else {
                return optionReply(context, code, NBD.repErrUnknown, message: "export '\(name)' went away")
            }
        }
        optionReply(context, code, NBD.repAck)
    }

    /// An information reply that carries a text (NBD_INFO_NAME, NBD_INFO_DESCRIPTION).
    private func infoText(_ context: ChannelHandlerContext, _ code: UInt32, _ type: UInt16, _ text: String) {
        var payload = context.channel.allocator.buffer(capacity: 2 + text.utf8.count)
        payload.writeInteger(type)
        payload.writeString(text)
        optionReply(context, code, NBD.repInfo, payload: payload, flush: false)
    }

    private func isReadOnly(_ tag: UInt64?) -> Bool {
        tag.map { !shared.host.isWritable(snapshot: $0) } ?? false
    }

    private func transmissionFlags(readOnly: Bool) -> UInt16 {
        var flags = NBD.transHasFlags | NBD.transSendFlush | NBD.transSendFUA | NBD.transCanMultiConn
        if readOnly { flags |= NBD.transReadOnly } else { flags |= NBD.transSendTrim | NBD.transSendWriteZeroes }
        return flags
    }

    /// Opens the export and enters the transmission phase; nil when it cannot be opened.
    private func begin(tag: UInt64?) -> (UInt64, UInt16)? {
        let readOnly = isReadOnly(tag)
        guard (try? shared.host.open(snapshot: tag, writable: !readOnly)) != nil,
              let size = shared.host.sizeBytes(snapshot: tag) else { return nil }
        export = (tag, size, readOnly)
        transmitting = true
        handshakeDeadline?.cancel()
        shared.logger.info("NBD client \(peer) opened \(tag.map { "snapshot \($0)" } ?? "the origin")\(readOnly ? " read-only" : "")")
        return (size, transmissionFlags(readOnly: readOnly))
    }

    private func optionReply(_ context: ChannelHandlerContext, _ option: UInt32, _ type: UInt32,
                             payload: ByteBuffer? = nil, message: String? = nil, flush: Bool = true) {
        var body = payload ?? context.channel.allocator.buffer(capacity: 0)
        if let message { body.writeString(message) }
        var out = context.channel.allocator.buffer(capacity: 20 + body.readableBytes)
        out.writeInteger(NBD.optionReplyMagic)
        out.writeInteger(option)
        out.writeInteger(type)
        out.writeInteger(UInt32(body.readableBytes))
        out.writeBuffer(&body)
        if flush { context.writeAndFlush(wrapOutboundOut(out), promise: nil) } else { context.write(wrapOutboundOut(out), promise: nil) }
    }

    // MARK: Transmission

    private func handleRequest(_ context: ChannelHandlerContext, _ r: NBDRequest, _ payload: ByteBuffer?) {
        guard let export else { return }
        if disconnecting { return }
        let known: UInt16 = NBD.cmdFlagFUA | NBD.cmdFlagNoHole | NBD.cmdFlagFastZero
        if r.flags & ~known != 0 { return reply(context, r, error: NBD.errInvalid, "unknown command flags 0x\(String(r.flags, radix: 16))") }
        let (end, overflow) = r.offset.addingReportingOverflow(UInt64(r.length))
        let inRange = !overflow && end <= export.size
        switch r.type {
        case NBD.cmdDisconnect:
            disconnecting = true
            if inFlight == 0 { context.close(promise: nil) }
            return
        case NBD.cmdRead:
            guard Int(r.length) <= NBD.requestBytesMax else { return reply(context, r, error: NBD.errOverflow, "read of \(r.length) bytes is larger than \(NBD.requestBytesMax)") }
            guard inRange else { return reply(context, r, error: NBD.errInvalid, "read past the end") }
        case NBD.cmdWrite, NBD.cmdWriteZeroes, NBD.cmdTrim:
            guard !export.readOnly else { return reply(context, r, error: NBD.errPerm, "export is read-only") }
            guard r.type != NBD.cmdWrite || payload != nil else {
                return reply(context, r, error: NBD.errOverflow, "write of \(r.length) bytes is larger than \(NBD.requestBytesMax)")
            }
            guard inRange else { return reply(context, r, error: r.type == NBD.cmdTrim ? NBD.errInvalid : NBD.errNoSpace, "past the end") }
            if r.type == NBD.cmdWriteZeroes && r.flags & NBD.cmdFlagFastZero != 0 {
                // Zeroes cost as much as any write here: the client asked not to wait for that.
                return reply(context, r, error: NBD.errNotSupported, "no fast zeroing")
            }
            if r.type == NBD.cmdTrim {
                // TRIM is advisory: the data of a trimmed range may stay as it was.
                if r.flags & NBD.cmdFlagFUA == 0 { return reply(context, r, error: 0, nil) }
            }
        case NBD.cmdFlush:
            break
        default:
            return reply(context, r, error: NBD.errInvalid, "unknown command \(r.type)")
        }
        enqueue(context, r, payload)
    }

    // Requests that passed the checks wait here until the end of the current read burst, then
    // go to the pool together: one hop to a pool thread and one back per burst instead of per
    // request (the hops, not the copies, dominated the cost of small and pipelined requests).
    private var pending: [(request: NBDRequest, payload: ByteBuffer?)] = []
    private let batchRequestsMax = 16

    func channelReadComplete(context: ChannelHandlerContext) {
        dispatch(context)
        context.fireChannelReadComplete()
    }

    private func enqueue(_ context: ChannelHandlerContext, _ r: NBDRequest, _ payload: ByteBuffer?) {
        pending.append((r, payload))
        inFlight += 1
        inFlightBytes += NBDConnectionHandler.bytes(of: r)
        if (inFlight >= inFlightMax || inFlightBytes >= Self.inFlightBytesMax) && !readingPaused {
            readingPaused = true
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        }
        if pending.count >= batchRequestsMax { dispatch(context) }
    }

    /// Runs the pending requests, in order, on one pool thread; answers each as the batch ends.
    private func dispatch(_ context: ChannelHandlerContext) {
        guard !pending.isEmpty, let tag = export.map({ $0.tag }) else { return }
        let batch = pending
        pending.removeAll(keepingCapacity: true)
        let host = shared.host
        let allocator = context.channel.allocator
        let structured = structuredReplies
        let loop = context.eventLoop
        let work: @Sendable () -> [Result<ByteBuffer?, Error>] = {
            NBDConnectionHandler.performBurst(host, tag, batch, allocator: allocator, structured: structured)
        }
        let future = shared.pool.map { $0.runIfActive(eventLoop: loop, work) } ?? loop.makeSucceededFuture(work())
        let bound = NIOLoopBound(context, eventLoop: loop)
        future.whenComplete { [self] outcome in
            let context = bound.value
            let results: [Result<ByteBuffer?, Error>]
            switch outcome {
            case let .success(r): results = r
            case let .failure(e): results = batch.map { _ in .failure(e) }  // the pool is shutting down
            }
            for (item, result) in zip(batch, results) {
                switch result {
                case let .success(buffer?):
                    context.write(wrapOutboundOut(buffer), promise: nil)
                case .success(nil):
                    reply(context, item.request, error: 0, nil, flush: false)
                case let .failure(error):
                    let r = item.request
                    shared.logger.error("NBD \(command(r.type)) of \(r.length) bytes at \(r.offset) failed: \(error)")
                    reply(context, r, error: NBDConnectionHandler.nbdError(error), "\(error)", flush: false)
                }
            }
            context.flush()
            finished(context, count: batch.count, bytes: batch.reduce(0) { $0 + NBDConnectionHandler.bytes(of: $1.request) })
        }
    }

    /// What a request holds in memory while in flight: a write's payload, a read's reply.
    private static func bytes(of r: NBDRequest) -> Int {
        r.type == NBD.cmdWrite || r.type == NBD.cmdRead ? Int(r.length) : 0
    }

    /// A burst's store work, in order, on one pool thread. Runs of plain origin writes (no
    /// FUA) enter the host's group commit together, each with its own result.
    private static func performBurst(_ host: VolumeHost, _ tag: UInt64?, _ batch: [(request: NBDRequest, payload: ByteBuffer?)],
                                     allocator: ByteBufferAllocator, structured: Bool) -> [Result<ByteBuffer?, Error>] {
        func isPlainOriginWrite(_ r: NBDRequest) -> Bool { tag == nil && r.type == NBD.cmdWrite && r.flags & NBD.cmdFlagFUA == 0 }
        var results: [Result<ByteBuffer?, Error>] = []
        results.reserveCapacity(batch.count)
        var i = 0
        while i < batch.count {
            var end = i
            while end < batch.count && isPlainOriginWrite(batch[end].request) { end += 1 }
            if end - i >= 2 {
                // The payloads stay alive (and in place) for the call: ByteBuffers held by `batch`.
                let run = Array(batch[i..<end])
                let failures = withPayloads(run.map { $0.payload! }) { pointers in
                    host.writeOrigin(burst: zip(run, pointers).map { ($0.0.request.offset, $0.1) })
                }
                results += failures.map { $0.map { .failure($0) } ?? .success(nil) }
                i = end
                continue
            }
            let item = batch[i]
            results.append(Result { try perform(host, tag, item.request, item.payload, allocator: allocator, structured: structured) })
            i += 1
        }
        return results
    }

    /// Calls `body` with the readable bytes of every buffer.
    private static func withPayloads<T>(_ buffers: [ByteBuffer], _ body: ([UnsafeRawBufferPointer]) -> T) -> T {
        func nest(_ k: Int, _ done: [UnsafeRawBufferPointer]) -> T {
            guard k < buffers.count else { return body(done) }
            return buffers[k].withUnsafeReadableBytes { nest(k + 1, done + [$0]) }
        }
        return nest(0, [])
    }

    /// One request's store work, on a pool thread: the read reply, or nil for a plain success.
    private static func perform(_ host: VolumeHost, _ tag: UInt64?, _ r: NBDRequest, _ payload: ByteBuffer?,
                                allocator: ByteBufferAllocator, structured: Bool) throws -> ByteBuffer? {
        switch r.type {
        case NBD.cmdRead:
            return try readReply(host, tag, r, allocator: allocator, structured: structured)
        case NBD.cmdWrite:
            try payload!.withUnsafeReadableBytes { try host.write(snapshot: tag, offset: r.offset, $0) }
            if r.flags & NBD.cmdFlagFUA != 0 { try host.flush() }
        case NBD.cmdWriteZeroes where r.flags & NBD.cmdFlagNoHole != 0:
            // The client wants the range allocated: zeros written, not a hole.
            try host.writeZeroBytes(snapshot: tag, offset: r.offset, length: UInt64(r.length))
            if r.flags & NBD.cmdFlagFUA != 0 { try host.flush() }
        case NBD.cmdWriteZeroes:
            // The zero path of a FUSE discard: copy-outs where snapshots need them, then a hole.
            try host.writeZeros(snapshot: tag, offset: r.offset, length: UInt64(r.length))
            if r.flags & NBD.cmdFlagFUA != 0 { try host.flush() }
        default:  // FLUSH, and TRIM with FUA
            try host.flush()
        }
        return nil
    }

    private func finished(_ context: ChannelHandlerContext, count: Int, bytes: Int) {
        inFlight -= count
        inFlightBytes -= bytes
        if readingPaused && inFlight < inFlightMax / 2 && inFlightBytes < Self.inFlightBytesMax / 2 {
            readingPaused = false
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        }
        if disconnecting && inFlight == 0 { context.close(promise: nil) }
    }

    /// The whole reply to a read, header and data, built on a pool thread.
    private static func readReply(_ host: VolumeHost, _ tag: UInt64?, _ r: NBDRequest,
                                  allocator: ByteBufferAllocator, structured: Bool) throws -> ByteBuffer {
        let n = Int(r.length)
        var out = allocator.buffer(capacity: 32 + n)
        if structured {
            out.writeInteger(NBD.structuredReplyMagic)
            out.writeInteger(NBD.replyFlagDone)
            out.writeInteger(n == 0 ? NBD.replyTypeNone : NBD.replyTypeOffsetData)
            out.writeInteger(r.cookie)
            out.writeInteger(UInt32(n == 0 ? 0 : 8 + n))
            if n > 0 { out.writeInteger(r.offset) }
        } else {
            out.writeInteger(NBD.simpleReplyMagic)
            out.writeInteger(UInt32(0))
            out.writeInteger(r.cookie)
        }
        if n > 0 {
            try out.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { b in
                try host.read(snapshot: tag, offset: r.offset, into: UnsafeMutableRawBufferPointer(rebasing: b[0..<n]))
                return n
            }
        }
        return out
    }

    /// A reply without data: success or an error (structured when negotiated and a read).
    private func reply(_ context: ChannelHandlerContext, _ r: NBDRequest, error: UInt32, _ message: String?, flush: Bool = true) {
        var out = context.channel.allocator.buffer(capacity: 32)
        if structuredReplies && r.type == NBD.cmdRead {
            let text = Array((message ?? "").utf8.prefix(4096))
            out.writeInteger(NBD.structuredReplyMagic)
            out.writeInteger(NBD.replyFlagDone)
            out.writeInteger(error == 0 ? NBD.replyTypeNone : NBD.replyTypeError)
            out.writeInteger(r.cookie)
            if error == 0 {
                out.writeInteger(UInt32(0))
            } else {
                out.writeInteger(UInt32(6 + text.count))
                out.writeInteger(error)
                out.writeInteger(UInt16(text.count))
                out.writeBytes(text)
            }
        } else {
            out.writeInteger(NBD.simpleReplyMagic)
            out.writeInteger(error)
            out.writeInteger(r.cookie)
        }
        if error != 0, let message, flush { shared.logger.info("NBD client \(peer): \(command(r.type)) refused: \(message)") }
        if flush { context.writeAndFlush(wrapOutboundOut(out), promise: nil) } else { context.write(wrapOutboundOut(out), promise: nil) }
    }

    private func command(_ type: UInt16) -> String {
        switch type {
        case NBD.cmdRead: return "read"
        case NBD.cmdWrite: return "write"
        case NBD.cmdFlush: return "flush"
        case NBD.cmdTrim: return "trim"
        case NBD.cmdWriteZeroes: return "write-zeroes"
        default: return "command \(type)"
        }
    }

    static func nbdError(_ error: Error) -> UInt32 {
        switch errnoCode(error) {
        case ENOSPC: return NBD.errNoSpace
        case EINVAL: return NBD.errInvalid
        case EROFS, EPERM: return NBD.errPerm
        default: return NBD.errIO
        }
    }
}

/// Listens for NBD clients on a Unix socket and, when asked, a TCP address.
final class NBDListener {
    private var channels: [Channel] = []

    /// `tls`: required of every TCP client when given (the Unix socket never offers it).
    init(unixPath: String?, tcp: (host: String, port: Int)?, tls: NBDTLSConfiguration?, group: EventLoopGroup, context: NBDContext) throws {
        func bootstrap(tls: NBDTLSConfiguration?) -> ServerBootstrap {
            ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 64)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(ChannelOptions.autoRead, value: true)
                // Reads large enough to take a typical write request at once.
                .childChannelOption(ChannelOptions.recvAllocator,
                                    value: AdaptiveRecvByteBufferAllocator(minimum: 64 << 10, initial: 256 << 10, maximum: 1 << 20))
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        guard context.connections.admit(channel, logger: context.logger) else { return }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(NBDDecoder()))
                        try channel.pipeline.syncOperations.addHandler(NBDConnectionHandler(context: context, tls: tls))
                    }
                }
        }
        if let unixPath {
            unlink(unixPath)
            let oldMask = umask(0o077)
            defer { umask(oldMask) }
            do {
                channels.append(try bootstrap(tls: nil).bind(unixDomainSocketPath: unixPath).wait())
                // Root's alone, as the control socket.
                chmod(unixPath, 0o600)
            } catch {
                throw VolumeError.system("cannot listen for NBD on \(unixPath): \(error)")
            }
        }
        if let tcp {
            do {
                channels.append(try bootstrap(tls: tls).childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                    .bind(host: tcp.host, port: tcp.port).wait())
            } catch {
                close()
                throw VolumeError.system("cannot listen for NBD on \(tcp.host):\(tcp.port): \(error)")
            }
        }
    }

    /// The TCP port actually bound (for --nbd-listen HOST:0).
    var tcpPort: Int? { channels.compactMap { $0.localAddress?.port }.first }

    func close() {
        for c in channels { _ = try? c.close().wait() }
        channels = []
    }
}
