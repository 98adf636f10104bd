// The client side of the control socket: a blocking connection used by `ddsnap <command>
// SOCKET ...` (and by volume management). It implements VolumeAccess, so a command does
// not care whether it opened the store or reached a server.

import Foundation
import SnapStore
import VolumeInterface

public final class ControlClient: VolumeAccess {
    public let socketPath: String
    public private(set) var server: ServerInfo!
    private let fd: Int32

    public var location: String { server.storePath }

    /// Connects to the server at `socketPath` and asks who it is.
    public init(socketPath: String) throws {
        self.socketPath = socketPath
        fd = try UnixSocket.connect(path: socketPath)
        server = try ask(.hello(client: ControlProtocol.version))
    }

    deinit { Foundation.close(fd) }

    // MARK: VolumeAccess

    public func status() throws -> StoreStatus { try ask(.status) }

    /// The server's metrics in Prometheus' text format; nil from a server too old to keep them.
    public func metricsText() throws -> String? {
        guard server.features?.contains(ServerInfo.featureMetrics) == true else { return nil }
        return try ask(.metrics) as String
    }

    public func snapshots() throws -> [SnapshotInfo] { try ask(.list) }

    public func snapshot(tag: UInt64) throws -> SnapshotInfo? { try ask(.snapshot(tag: tag)) }

    public func createSnapshot(tag: UInt64, name: String, priority: Int8, createdNanoseconds: UInt64?) throws -> SnapshotInfo {
        try ask(.create(tag: tag, name: name, priority: priority, created: createdNanoseconds))
    }

    public func deleteSnapshot(tag: UInt64) throws -> UInt64 { try ask(.delete(tag: tag)) }

    public func adjustUsecount(tag: UInt64, by delta: Int64) throws -> UInt32 { try ask(.usecount(tag: tag, delta: delta)) }

    public func setPriority(tag: UInt64, _ priority: Int8) throws { try ask(.priority(tag: tag, priority: priority)) as Void }

    public func usage(tag: UInt64) throws -> SnapshotUsage { try ask(.usage(tag: tag)) }

    public func read(snapshot: UInt64?, offset: UInt64, length: UInt64?,
                     to sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try send(.read(snapshot: snapshot, offset: offset, length: length))
        try expect(try receiveReply { piece in try sink(piece) }, for: .read(snapshot: snapshot, offset: offset, length: length)) as Void
    }

    public func read(snapshot: UInt64?, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try send(.read(snapshot: snapshot, offset: offset, length: UInt64(buffer.count)))
        var filled = 0
        let result = try receiveReply(into: { count in
            guard count <= buffer.count - filled else {
                throw VolumeError.protocolViolation("the server sent more than the \(buffer.count) bytes asked for")
            }
            defer { filled += count }
            return UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<(filled + count)])
        })
        try expect(result, for: .read(snapshot: snapshot, offset: offset, length: UInt64(buffer.count))) as Void
        guard filled == buffer.count else {
            throw VolumeError.protocolViolation("the server sent \(filled) of the \(buffer.count) bytes asked for")
        }
    }

    public func read(snapshot: UInt64?, ranges: [(offset: UInt64, length: Int)],
                     into buffer: (Int) throws -> UnsafeMutableRawBufferPointer, each: (Int) throws -> Void) throws {
        try checkReadRanges(ranges)
        guard !ranges.isEmpty else { return }
        let request = ControlRequest.readRanges(snapshot: snapshot, ranges: ranges.map { [$0.offset, UInt64($0.length)] })
        try send(request)
        // Range `current` has `filled` bytes so far, in `destination`; it is handed to `each`
        // when the next frame or the reply arrives. Once `buffer` or `each` fails, the rest of
        // the stream is read and dropped (the connection stays usable), and the failure is
        // thrown after the reply.
        var (current, filled) = (0, 0)
        var destination = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        var failure: (any Error)?
        let result = try withoutActuallyEscaping(buffer) { buffer in try withoutActuallyEscaping(each) { each in
            func finishRange() {
                guard current < ranges.count, filled == ranges[current].length else { return }
                if failure == nil {
                    do { try each(current) } catch { failure = error }
                }
                (current, filled) = (current + 1, 0)
            }
            let result = try receiveReply(into: { count in
                finishRange()
                guard current < ranges.count, count <= ranges[current].length - filled else {
                    throw VolumeError.protocolViolation("the server sent more than the \(ranges.count) ranges asked for, or a frame across two of them")
                }
                if filled == 0 && failure == nil {
                    do {
                        destination = try buffer(current)
                        try checkRangeBuffer(destination, ranges[current].length)
                    } catch {
                        failure = error
                    }
                }
                defer { filled += count }
                if failure != nil { return UnsafeMutableRawBufferPointer(rebasing: self.payload.storage[0..<count]) }
                return UnsafeMutableRawBufferPointer(rebasing: destination[filled..<(filled + count)])
            })
            finishRange()
            return result
        } }
        if let failure { throw failure }
        try expect(result, for: request) as Void
        guard current == ranges.count else {
            throw VolumeError.protocolViolation("the server sent \(current) of the \(ranges.count) ranges asked for")
        }
    }

    public func write(snapshot: UInt64?, offset: UInt64, flush: Bool,
                      from source: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> UInt64 {
        let request = ControlRequest.write(snapshot: snapshot, offset: offset, flush: flush)
        try send(request)
        var buffer = [UInt8](repeating: 0, count: streamPieceBytes)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try source($0) }
            if n == 0 { break }
            // The server may refuse part way (a bad offset): its reply then comes early.
            do {
                try send(.data(Array(buffer[0..<n])))
            } catch VolumeError.unreachable {
                break
            }
        }
        try? send(.end)
        return try expect(try receiveReply(), for: request)
    }

    public func write(originExtents extents: [(offset: UInt64, data: UnsafeRawBufferPointer)]) throws {
        let extents = extents.filter { !$0.data.isEmpty }
        guard server.features?.contains(ServerInfo.featureWriteExtents) == true else {
            try writeEachExtent(extents)
            return
        }
        // As few requests as the limits allow: each is one commit.
        var start = 0
        while start < extents.count {
            var end = start, bytes = 0
            while end < extents.count, end - start < writeExtentsCountMax, bytes + extents[end].data.count <= writeExtentsBytesMax {
                bytes += extents[end].data.count
                end += 1
            }
            if end == start {
                // One extent larger than a request: a write of its own.
                try writeEachExtent([extents[start]])
                start += 1
                continue
            }
            try writeExtents(extents[start..<end])
            start = end
        }
    }

    /// One `writeExtents` request: the list, the bytes in data frames, the end frame.
    private func writeExtents(_ extents: ArraySlice<(offset: UInt64, data: UnsafeRawBufferPointer)>) throws {
        let request = ControlRequest.writeExtents(extents: extents.map { [$0.offset, UInt64($0.data.count)] })
        try send(request)
        var piece: [UInt8] = []
        piece.reserveCapacity(streamPieceBytes)
        do {
            for e in extents {
                var done = 0
                while done < e.data.count {
                    let n = min(streamPieceBytes - piece.count, e.data.count - done)
                    piece.append(contentsOf: UnsafeRawBufferPointer(rebasing: e.data[done..<(done + n)]))
                    done += n
                    if piece.count == streamPieceBytes {
                        try send(.data(piece))
                        piece.removeAll(keepingCapacity: true)
                    }
                }
            }
            if !piece.isEmpty { try send(.data(piece)) }
        } catch VolumeError.unreachable {
            // The server refused part way: its reply came early.
        }
        try? send(.end)
        try expect(try receiveReply(), for: request) as Void
    }

    /// Each extent as a write request of its own (a server without `writeExtents`).
    private func writeEachExtent(_ extents: [(offset: UInt64, data: UnsafeRawBufferPointer)]) throws {
        for e in extents {
            var done = 0
            _ = try write(snapshot: nil, offset: e.offset, flush: false) { buffer in
                let n = min(buffer.count, e.data.count - done)
                buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: e.data[done..<(done + n)]))
                done += n
                return n
            }
        }
    }

    public func changedChunks(from: StoreSide, to: StoreSide, startingAt start: UInt64, limit: UInt64?,
                              _ body: (UInt64) throws -> Void) throws {
        let request = ControlRequest.changelist(from: from, to: to, start: start, limit: limit)
        try send(request)
        let result = try receiveReply { piece in
            guard piece.count % 8 == 0 else { throw VolumeError.protocolViolation("changelist piece of \(piece.count) bytes") }
            var i = 0
            while i < piece.count {
                var chunk: UInt64 = 0
                for b in 0..<8 { chunk |= UInt64(piece[i + b]) << (8 * UInt64(b)) }
                try body(chunk)
                i += 8
            }
        }
        try expect(result, for: request) as Void
    }

    public func flush() throws { try ask(.flush) as Void }

    public func dataRanges(snapshot: UInt64?, chunks: Range<UInt64>) throws -> [Range<UInt64>] {
        let pairs: [[UInt64]] = try ask(.dataRanges(snapshot: snapshot, first: chunks.lowerBound, end: chunks.upperBound))
        return try pairs.map { p in
            guard p.count == 2, p[0] < p[1], p[0] >= chunks.lowerBound, p[1] <= chunks.upperBound else {
                throw VolumeError.protocolViolation("data range \(p) outside \(chunks)")
            }
            return p[0]..<p[1]
        }
    }

    public func adoptVolumeUUID(_ uuid: [UInt8]) throws { try ask(.adoptUUID(uuid: formatUUID(uuid))) as Void }

    public func revert(to tag: UInt64) throws -> Int { Int(try ask(.revert(tag: tag)) as UInt64) }

    public func resizeOrigin(to bytes: UInt64) throws -> StoreStatus { try ask(.resizeOrigin(bytes: bytes)) }

    public func resizeStore(to bytes: UInt64) throws -> StoreStatus { try ask(.resizeStore(bytes: bytes)) }

    public func check(repair: Bool) throws -> CheckReport { try ask(.check(repair: repair)) }

    // MARK: Server-only requests

    public func attach(tag: UInt64?, writable: Bool) throws -> AttachedDevice { try ask(.attach(tag: tag, writable: writable)) }

    public func detach(tag: UInt64?) throws -> AttachedDevice { try ask(.detach(tag: tag)) }

    public func devices() throws -> [AttachedDevice] { try ask(.devices) }

    // MARK: Frames

    /// Sends a request without a data stream and returns its result.
    public func call(_ request: ControlRequest) throws -> ControlResult {
        try send(.message(ControlCoding.encode(request)))
        return try receiveReply()
    }

    /// Sends a request without a data stream and returns the value of its reply, of the type
    /// the caller expects.
    private func ask<Value>(_ request: ControlRequest) throws -> Value {
        do {
            return try expect(try call(request), for: request)
        } catch let VolumeError.protocolViolation(text) where text.hasPrefix("malformed request") {
            throw versionMismatch(request, text) ?? VolumeError.protocolViolation(text)
        }
    }

    /// A request the server could not read, explained when the server speaks another version
    /// of the protocol than this client (nil: the same one, so the request was at fault).
    func versionMismatch(_ request: ControlRequest, _ text: String) -> VolumeError? {
        let theirs = server?.protocolVersion ?? 1
        guard theirs != ControlProtocol.version else { return nil }
        let release = server?.release.map { "zumastor \($0)" } ?? "an older zumastor"
        if theirs < ControlProtocol.version {
            return .unreachable("the server at \(socketPath) runs \(release) (control protocol \(theirs)) and does not know '\(request.name)' of this \(ControlProtocol.release) (protocol \(ControlProtocol.version)): restart it after the upgrade (zumastor stop, then zumastor start; or stop and start its ddsnap server)")
        }
        return .unreachable("the server at \(socketPath) runs \(release) (control protocol \(theirs)), newer than this \(ControlProtocol.release) (protocol \(ControlProtocol.version)), and could not read '\(request.name)': use the zumastor and ddsnap of the server's version")
    }

    /// The value of a reply to `request`; a reply of another kind breaks the protocol.
    private func expect<Value>(_ result: ControlResult, for request: ControlRequest) throws -> Value {
        guard let value = result.value as? Value else {
            throw VolumeError.protocolViolation("the server's reply to '\(request.name)' is not of the expected kind")
        }
        return value
    }

    private func send(_ request: ControlRequest) throws {
        try send(.message(ControlCoding.encode(request)))
    }

    private func send(_ frame: ControlFrame) throws {
        try UnixSocket.writeAll(fd, frame.encoded(), peer: socketPath)
    }

    /// Frame payloads are read here, reused from frame to frame (a data frame is up to 1 MiB:
    /// a fresh buffer each time would cost page faults on every one); mapped, so a client
    /// that only exchanges small messages touches one page of it.
    private lazy var payload = BulkBuffer(capacity: ControlFrame.payloadBytesMax)

    /// Reads frames until the reply message; data frames go to `data`, valid during the call,
    /// or with `into`, straight into the buffer it gives for a frame's payload length.
    private func receiveReply(data: (UnsafeRawBufferPointer) throws -> Void = { _ in
        throw VolumeError.protocolViolation("unexpected data frame")
    }, into destination: ((Int) throws -> UnsafeMutableRawBufferPointer)? = nil) throws -> ControlResult {
        while true {
            let header = try UnixSocket.readExactly(fd, ControlFrame.headerBytes, peer: socketPath)
            let (kind, count) = try ControlFrame.payloadLength(header: header)
            if kind == ControlFrame.dataKind, let destination {
                try UnixSocket.readExactly(fd, into: try destination(count), peer: socketPath)
                continue
            }
            let piece = UnsafeMutableRawBufferPointer(rebasing: payload.storage[0..<count])
            try UnixSocket.readExactly(fd, into: piece, peer: socketPath)
            if kind == ControlFrame.dataKind {
                try data(UnsafeRawBufferPointer(piece))
                continue
            }
            switch try ControlFrame.make(kind: kind, payload: Array(UnsafeRawBufferPointer(piece))) {
            case let .message(bytes):
                switch try ControlCoding.decode(ControlReply.self, from: bytes) {
                case let .ok(result): return result
                case let .failed(failure): throw failure.error
                }
            case .data, .end: // data frames are handled above
                throw VolumeError.protocolViolation("unexpected end frame")
            }
        }
    }
}

/// Blocking Unix-socket helpers for clients.
enum UnixSocket {
    static func address(_ path: String) throws -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
            throw VolumeError.invalidArgument("socket path \(path) is longer than \(MemoryLayout.size(ofValue: addr.sun_path) - 1) bytes")
        }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
        }
        return addr
    }

    static func connect(path: String) throws -> Int32 {
        var addr = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw VolumeError.system("socket: \(describeErrno(errno))") }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if rc != 0 {
            let e = errno
            Foundation.close(fd)
            throw VolumeError.unreachable("no server answers on \(path): \(describeErrno(e))")
        }
        return fd
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], peer: String) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Foundation.send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw VolumeError.unreachable("the server on \(peer) went away: \(describeErrno(errno))")
            }
            done += n
        }
    }

    static func readExactly(_ fd: Int32, _ count: Int, peer: String) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try readExactly(fd, into: $0, peer: peer) }
        return bytes
    }

    static func readExactly(_ fd: Int32, into bytes: UnsafeMutableRawBufferPointer, peer: String) throws {
        let count = bytes.count
        guard count > 0 else { return }
        var done = 0
        while done < count {
            let n = Foundation.read(fd, bytes.baseAddress! + done, count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw VolumeError.unreachable("the server on \(peer) went away: \(describeErrno(errno))")
            }
            if n == 0 { throw VolumeError.unreachable("the server on \(peer) closed the connection") }
            done += n
        }
    }
}
