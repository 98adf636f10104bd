import Foundation
import NIOCore
import NIOEmbedded
import SnapStore
import Testing
@testable import VolumeServer
import VolumeInterface

@Suite struct ControlProtocolTests {
    private func decoderChannel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ControlFrameDecoder()))
        return channel
    }

    @Test func framesRoundTripInPieces() throws {
        let channel = try decoderChannel()
        let frames: [ControlFrame] = [.message(ControlCoding.encode(ControlRequest.create(tag: 7, name: "n", priority: -3, created: nil))),
                                      .data([1, 2, 3]), .end]
        let wire = frames.flatMap { $0.encoded() }
        // Byte by byte: the decoder waits for whole frames.
        for b in wire { try channel.writeInbound(ByteBuffer(bytes: [b])) }
        for f in frames { #expect(try channel.readInbound(as: ControlFrame.self) == f) }
        #expect(try channel.readInbound(as: ControlFrame.self) == nil)
        let request = try ControlCoding.decode(ControlRequest.self, from: frames[0].payload)
        #expect(request == .create(tag: 7, name: "n", priority: -3, created: nil))
        // Fields added since version 1 of the protocol are optional: older clients still parse.
        let older = try ControlCoding.decode(ControlRequest.self, from: Array(#"{"create":{"tag":7,"name":"n","priority":-3}}"#.utf8))
        #expect(older == .create(tag: 7, name: "n", priority: -3, created: nil))
        let write = try ControlCoding.decode(ControlRequest.self, from: Array(#"{"write":{"offset":0}}"#.utf8))
        #expect(write == .write(snapshot: nil, offset: 0, flush: nil))
    }

    /// Protocol 2 adds the versions to hello; a hello and a server description of protocol 1
    /// still parse, and protocol 1's decoder (a hello without fields) takes protocol 2's hello.
    @Test func versionsInHello() throws {
        #expect(try ControlCoding.decode(ControlRequest.self, from: Array(#"{"hello":{}}"#.utf8)) == .hello(client: nil))
        let hello = ControlCoding.encode(ControlRequest.hello(client: ControlProtocol.version))
        #expect(String(decoding: hello, as: UTF8.self) == #"{"hello":{"client":2}}"#)
        enum VersionOneRequest: Codable { case hello, status }
        #expect(try JSONDecoder().decode(VersionOneRequest.self, from: Data(hello)) == .hello)
        let old = #"{"volume":"v","storePath":"/s","originPath":"/o","processID":7,"blockFileDirectory":"/b"}"#
        let info = try JSONDecoder().decode(ServerInfo.self, from: Data(old.utf8))
        #expect(info.protocolVersion == nil && info.release == nil && info.features == nil)
    }

    @Test(arguments: [
        ([UInt8]([2, 0, 0, 0, 9, 1]), "frame version 9 is not supported"),
        ([UInt8]([2, 0, 0, 0, 1, 7]), "unknown frame kind 7"),
        ([UInt8]([1, 0, 0, 0, 1, 1]), "shorter than its header"),
        ([UInt8]([0xff, 0xff, 0xff, 0x7f, 1, 2]), "larger than the limit"),
    ])
    func malformedFramesAreRefused(header: [UInt8], message: String) throws {
        let channel = try decoderChannel()
        do {
            try channel.writeInbound(ByteBuffer(bytes: header))
            Issue.record("accepted a malformed frame")
        } catch let e as VolumeError {
            #expect("\(e)".contains(message))
        }
    }

    @Test func malformedRequestsNameTheProblem() {
        for (json, text) in [("{\"create\":{\"tag\":1}}", "missing field 'name'"), ("not json", "malformed request"),
                             ("{\"explode\":{}}", "malformed request")] {
            #expect(throws: VolumeError.self) { try ControlCoding.decode(ControlRequest.self, from: Array(json.utf8)) }
            do {
                _ = try ControlCoding.decode(ControlRequest.self, from: Array(json.utf8))
            } catch {
                #expect("\(error)".contains(text), "\(error)")
            }
        }
    }

    /// Runs `serve` as a server on a fresh socket (after it answered `hello`), and `use` with
    /// a client connected to it.
    private func withFakeServer(serve: @escaping @Sendable (FakeServerConnection) throws -> Void,
                                use: (ControlClient) throws -> Void) throws {
        let dir = NSTemporaryDirectory() + "zuma-client-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/socket"
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(listener >= 0)
        defer { close(listener) }
        var address = try UnixSocket.address(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(bound == 0 && listen(listener, 1) == 0)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            defer { done.signal() }
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            defer { close(fd) }
            let connection = FakeServerConnection(fd: fd)
            let info = ServerInfo(volume: "v", storePath: "s", originPath: "o", processID: 1, blockFileDirectory: "b", nbdSocket: nil, nbdListen: nil)
            _ = try? connection.request()
            try? connection.reply(.ok(.server(info)))
            try? serve(connection)
        }
        defer { done.wait() }
        try use(try ControlClient(socketPath: path))
    }

    /// A read into the caller's buffer takes the data frames straight into it, and a reply
    /// with more or fewer bytes than asked for is refused (a server speaking nonsense).
    @Test(arguments: [([4096, 4096], nil), ([4096, 4097], "more than the 8192 bytes"), ([4096], "4096 of the 8192 bytes")])
    func readIntoTakesExactlyWhatWasAsked(pieces: [Int], refusal: String?) throws {
        try withFakeServer(serve: { c in try c.answerWithData(pieces) }) { client in
            var buffer = [UInt8](repeating: 0, count: 8192)
            do {
                try buffer.withUnsafeMutableBytes { try client.read(snapshot: nil, offset: 0, into: $0) }
                #expect(refusal == nil, "took a reply of \(pieces) bytes for 8192")
                #expect(buffer == [UInt8](repeating: 1, count: 4096) + [UInt8](repeating: 2, count: 4096))
            } catch let e as VolumeError {
                #expect(refusal != nil && "\(e)".contains(refusal!), "\(e)")
            }
        }
    }

    /// A read of several ranges hands each one over once it is complete, in order, and refuses
    /// a reply whose frames do not fit the ranges asked for.
    @Test(arguments: [([3000, 1000, 5000], nil), ([3000, 1001, 4999], "across two of them"), ([4000], "1 of the 2 ranges"),
                      ([4000, 5000, 1], "more than the 2 ranges")])
    func readRangesHandsOverEachRange(pieces: [Int], refusal: String?) throws {
        try withFakeServer(serve: { c in try c.answerWithData(pieces) }) { client in
            let buffer = BulkBuffer(capacity: 8192)
            var seen: [[UInt8]] = []
            do {
                try client.read(snapshot: 3, ranges: [(0, 4000), (65536, 5000)], into: { _ in buffer.storage }) { i in
                    seen.append(Array(buffer.storage[0..<(i == 0 ? 4000 : 5000)]))
                }
                #expect(refusal == nil, "took frames of \(pieces) bytes for ranges of 4000 and 5000")
                #expect(seen == [[UInt8](repeating: 1, count: 3000) + [UInt8](repeating: 2, count: 1000), [UInt8](repeating: 3, count: 5000)])
            } catch let e as VolumeError {
                #expect(refusal != nil && "\(e)".contains(refusal!), "\(e)")
            }
        }
    }

    /// When the caller fails on a range (taking it, or giving a buffer for it), the rest of
    /// the reply is still read, so the connection stays in step: the next request gets its own
    /// reply.
    @Test(arguments: [false, true])
    func aFailedRangeLeavesTheConnectionUsable(failInBuffer: Bool) throws {
        struct Stop: Error {}
        try withFakeServer(serve: { c in
            let asked = try c.request()
            guard case let .readRanges(snapshot, ranges) = asked, snapshot == nil, ranges == [[0, 4096], [4096, 4096], [8192, 4096]] else {
                return try c.reply(.failed(.volume(.protocolViolation("unexpected request \(asked)"))))
            }
            for i in 0..<3 { try c.data([UInt8](repeating: UInt8(i), count: 4096)) }
            try c.reply(.ok(.none))
            _ = try c.request()
            try c.reply(.ok(.count(42)))
        }) { client in
            let buffer = BulkBuffer(capacity: 4096)
            var calls = 0
            #expect(throws: Stop.self) {
                try client.read(snapshot: nil, ranges: [(0, 4096), (4096, 4096), (8192, 4096)], into: { i in
                    if failInBuffer && i == 1 { throw Stop() }
                    return buffer.storage
                }) { _ in
                    calls += 1
                    if !failInBuffer { throw Stop() }
                }
            }
            #expect(calls == 1)
            let next = try client.call(.delete(tag: 1))
            #expect(next == .count(42))
        }
    }

    @Test func errorsCrossTheSocketUnchanged() throws {
        for e: Error in [StoreError.snapshotMissing(4), StoreError.noSpace, VolumeError.inUse("busy")] {
            let bytes = ControlCoding.encode(ControlReply.failed(ControlFailure(e)))
            guard case let .failed(f) = try ControlCoding.decode(ControlReply.self, from: bytes) else {
                Issue.record("not a failure")
                continue
            }
            #expect("\(f.error)" == "\(e)")
        }
    }
}

/// The server's end of a fake connection, for client tests.
struct FakeServerConnection: Sendable {
    let fd: Int32

    func request() throws -> ControlRequest {
        let header = try UnixSocket.readExactly(fd, ControlFrame.headerBytes, peer: "client")
        let payload = try UnixSocket.readExactly(fd, try ControlFrame.payloadLength(header: header).count, peer: "client")
        return try ControlCoding.decode(ControlRequest.self, from: payload)
    }

    func reply(_ r: ControlReply) throws { try UnixSocket.writeAll(fd, ControlFrame.message(ControlCoding.encode(r)).encoded(), peer: "client") }

    func data(_ bytes: [UInt8]) throws { try UnixSocket.writeAll(fd, ControlFrame.data(bytes).encoded(), peer: "client") }

    /// Takes a request and answers it with data frames of `pieces` bytes (the first all 1s,
    /// the next all 2s...), then an empty reply.
    func answerWithData(_ pieces: [Int]) throws {
        _ = try request()
        for (i, n) in pieces.enumerated() { try data([UInt8](repeating: UInt8(i + 1), count: n)) }
        try reply(.ok(.none))
    }
}
