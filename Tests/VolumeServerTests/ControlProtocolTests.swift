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
