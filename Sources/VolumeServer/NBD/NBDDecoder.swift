// Cuts the client's byte stream into NBD messages. After the 4-byte client flags, every
// message starts with a magic number that says what it is: "IHAVEOPT" an option, 0x25609513
// a request (followed by its data when it is a write). Anything else is a protocol error
// and ends the connection. Oversized payloads are skipped, not buffered, and reported, so
// the connection stays in step and the handler can refuse them.

import NIOCore

struct NBDRequest: Equatable {
    var flags: UInt16
    var type: UInt16
    var cookie: UInt64
    var offset: UInt64
    var length: UInt32
}

enum NBDInbound {
    case clientFlags(UInt32)
    case option(code: UInt32, data: ByteBuffer)
    /// An option whose data was larger than we accept (skipped).
    case oversizedOption(code: UInt32, length: UInt32)
    /// A request; `payload` is the data of a write (nil: none, or skipped because oversized).
    case request(NBDRequest, payload: ByteBuffer?)
}

enum NBDProtocolError: Error, CustomStringConvertible {
    case badMagic(UInt64)
    case dataAfterStartTLS

    var description: String {
        switch self {
        case let .badMagic(m): return "unexpected magic 0x\(String(m, radix: 16)) (not an NBD option or request)"
        case .dataAfterStartTLS: return "data sent after STARTTLS before its reply (refused: it would pass as if sent through TLS)"
        }
    }
}

struct NBDDecoder: ByteToMessageDecoder {
    typealias InboundOut = NBDInbound

    private var sawClientFlags = false
    /// Bytes of an oversized payload still to throw away.
    private var skipping = 0
    /// A write whose data is still arriving, and the data so far. Arriving bytes are copied
    /// here once and the input consumed whole, so the input buffer never has to be compacted
    /// (which would copy a partial payload again on every read).
    private var collecting: (request: NBDRequest, payload: ByteBuffer)?

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if collecting != nil { return collect(context: context, buffer: &buffer) }
        if skipping > 0 {
            let n = min(skipping, buffer.readableBytes)
            buffer.moveReaderIndex(forwardBy: n)
            skipping -= n
            return skipping == 0 ? .continue : .needMoreData
        }
        if !sawClientFlags {
            guard let flags = buffer.readInteger(as: UInt32.self) else { return .needMoreData }
            sawClientFlags = true
            context.fireChannelRead(wrapInboundOut(.clientFlags(flags)))
            return .continue
        }
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        if first == NBD.requestMagic { return decodeRequest(context: context, buffer: &buffer) }
        return try decodeOption(context: context, buffer: &buffer)
    }

    /// More of the payload of the write in `collecting`.
    private mutating func collect(context: ChannelHandlerContext, buffer: inout ByteBuffer) -> DecodingState {
        // Taken out first, so the payload is uniquely referenced and grows in place: with
        // `collecting` still holding it, every piece appended copied the whole payload
        // (a 32 MiB write took 3 s to arrive in 1 MiB reads).
        var pending = collecting!
        collecting = nil
        let need = Int(pending.request.length) - pending.payload.readableBytes
        var piece = buffer.readSlice(length: min(need, buffer.readableBytes))!
        pending.payload.writeBuffer(&piece)
        if pending.payload.readableBytes < Int(pending.request.length) {
            collecting = pending
            return .needMoreData
        }
        context.fireChannelRead(wrapInboundOut(.request(pending.request, payload: pending.payload)))
        return .continue
    }

    /// A transmission request (28 bytes), and a write's payload.
    private mutating func decodeRequest(context: ChannelHandlerContext, buffer: inout ByteBuffer) -> DecodingState {
        guard buffer.readableBytes >= 28 else { return .needMoreData }
        let at = buffer.readerIndex
        let request = NBDRequest(flags: buffer.getInteger(at: at + 4)!, type: buffer.getInteger(at: at + 6)!,
                                 cookie: buffer.getInteger(at: at + 8)!, offset: buffer.getInteger(at: at + 16)!,
                                 length: buffer.getInteger(at: at + 24)!)
        buffer.moveReaderIndex(forwardBy: 28)
        let length = Int(request.length)
        guard request.type == NBD.cmdWrite, length <= NBD.requestBytesMax else {
            // An oversized write's payload is thrown away; the handler refuses the request.
            if request.type == NBD.cmdWrite { skipping = length }
            context.fireChannelRead(wrapInboundOut(.request(request, payload: nil)))
            return .continue
        }
        guard buffer.readableBytes >= length else {
            var payload = context.channel.allocator.buffer(capacity: length)
            var piece = buffer.readSlice(length: buffer.readableBytes)!
            payload.writeBuffer(&piece)
            collecting = (request, payload)
            return .needMoreData
        }
        let payload = buffer.readSlice(length: length)!
        context.fireChannelRead(wrapInboundOut(.request(request, payload: payload)))
        return .continue
    }

    /// An option of the handshake (16 bytes and its data).
    private mutating func decodeOption(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard buffer.readableBytes >= 8 else { return .needMoreData }
        let magic: UInt64 = buffer.getInteger(at: buffer.readerIndex)!
        guard magic == NBD.optionMagic else { throw NBDProtocolError.badMagic(magic) }
        guard buffer.readableBytes >= 16 else { return .needMoreData }
        let code: UInt32 = buffer.getInteger(at: buffer.readerIndex + 8)!
        let length: UInt32 = buffer.getInteger(at: buffer.readerIndex + 12)!
        if length > NBD.optionBytesMax {
            buffer.moveReaderIndex(forwardBy: 16)
            skipping = Int(length)
            context.fireChannelRead(wrapInboundOut(.oversizedOption(code: code, length: length)))
            return .continue
        }
        guard buffer.readableBytes >= 16 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 16)
        let data = buffer.readSlice(length: Int(length))!
        // A client waits for STARTTLS's reply; bytes already here are plain text that TLS
        // would otherwise seem to have carried.
        if code == NBD.optStartTLS && buffer.readableBytes > 0 { throw NBDProtocolError.dataAfterStartTLS }
        context.fireChannelRead(wrapInboundOut(.option(code: code, data: data)))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A connection that ends mid-message just ends.
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}
