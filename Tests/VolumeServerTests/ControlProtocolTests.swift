import Foundation
import NIOCore
import NIOEmbedded
import SnapStore
import Testing
@testable import VolumeServer

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

    /// A read into the caller's buffer takes the data frames straight into it, and a reply
    /// with more or fewer bytes than asked for is refused (a server speaking nonsense).
    @Test(arguments: [([4096, 4096], nil), ([4096, 4097], "more than the 8192 bytes"), ([4096], "4096 of the 8192 bytes")])
    func readIntoTakesExactlyWhatWasAsked(pieces: [Int], refusal: String?) throws {
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
        // The server: answers hello, then the read with `pieces` data frames and its reply.
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            defer { done.signal() }
            let fd = accept(listener, nil, nil)
            guard fd >= 0 else { return }
            defer { close(fd) }
            func request() throws {
                let header = try UnixSocket.readExactly(fd, ControlFrame.headerBytes, peer: "client")
                _ = try UnixSocket.readExactly(fd, try ControlFrame.payloadLength(header: header).count, peer: "client")
            }
            func reply(_ r: ControlReply) throws { try UnixSocket.writeAll(fd, ControlFrame.message(ControlCoding.encode(r)).encoded(), peer: "client") }
            let info = ServerInfo(volume: "v", storePath: "s", originPath: "o", processID: 1, blockFileDirectory: "b", nbdSocket: nil, nbdListen: nil)
            try? request()
            try? reply(.ok(.server(info)))
            try? request()
            for (i, n) in pieces.enumerated() {
                try? UnixSocket.writeAll(fd, ControlFrame.data([UInt8](repeating: UInt8(i + 1), count: n)).encoded(), peer: "client")
            }
            try? reply(.ok(.none))
        }
        let client = try ControlClient(socketPath: path)
        var buffer = [UInt8](repeating: 0, count: 8192)
        do {
            try buffer.withUnsafeMutableBytes { try client.read(snapshot: nil, offset: 0, into: $0) }
            #expect(refusal == nil, "took a reply of \(pieces) bytes for 8192")
            #expect(buffer == [UInt8](repeating: 1, count: 4096) + [UInt8](repeating: 2, count: 4096))
        } catch let e as VolumeError {
            #expect(refusal != nil && "\(e)".contains(refusal!), "\(e)")
        }
        done.wait()
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
