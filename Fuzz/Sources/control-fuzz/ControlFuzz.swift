// Feeds arbitrary bytes to the control socket's framing and message decoders as a connection
// would carry them: frames (u32 length, version, kind, payload) one after another, the
// messages among them decoded as requests (what a server reads) or, when the first input byte
// is odd, as replies (what a client reads). Each frame must be cut or refused with
// VolumeError, each message decode or be refused with VolumeError, never crash (AddressSanitizer
// is on); a message that decodes must encode to bytes that decode to the same message.
// ZUMA_CONTROL_FUZZ_CORPUS=DIR makes the seed corpus there and exits instead.

import FuzzDriver
import Foundation
import VolumeInterface
@testable import VolumeServer

func check<T: Codable & Equatable>(_ type: T.Type, _ payload: [UInt8]) {
    do {
        let value = try ControlCoding.decode(type, from: payload)
        let again = try ControlCoding.decode(type, from: ControlCoding.encode(value))
        guard again == value else { fatalError("\(value) encodes to a message that decodes to \(again)") }
    } catch is VolumeError {
    } catch {
        fatalError("the decoder threw something other than VolumeError: \(error)")
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let replies = data[0] & 1 != 0
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    var at = 0
    while bytes.count - at >= ControlFrame.headerBytes {
        let frame: ControlFrame
        do {
            let (kind, count) = try ControlFrame.payloadLength(header: Array(bytes[at..<(at + ControlFrame.headerBytes)]))
            guard count <= bytes.count - at - ControlFrame.headerBytes else { break }
            let start = at + ControlFrame.headerBytes
            frame = try ControlFrame.make(kind: kind, payload: Array(bytes[start..<(start + count)]))
            at = start + count
        } catch is VolumeError {
            break  // the server answers and closes the connection
        } catch {
            fatalError("the framing threw something other than VolumeError: \(error)")
        }
        guard case let .message(payload) = frame else { continue }
        if replies { check(ControlReply.self, payload) } else { check(ControlRequest.self, payload) }
    }
    return 0
}

/// Seeds: a client's conversation (hello, status, a create, a write with its data and end
/// frames, a changelist) and a server's replies.
func makeCorpus(_ directory: String) throws {
    func frames(_ messages: [ControlFrame]) -> [UInt8] { messages.flatMap { $0.encoded() } }
    func message<T: Encodable>(_ value: T) -> ControlFrame { .message(ControlCoding.encode(value)) }
    let requests = frames([
        message(ControlRequest.hello(client: ControlProtocol.version)), message(ControlRequest.status),
        message(ControlRequest.create(tag: 7, name: "hourly", priority: -3, created: 1_750_000_000_000_000_000)),
        message(ControlRequest.write(snapshot: nil, offset: 4096, flush: true)), .data([1, 2, 3, 4]), .end,
        message(ControlRequest.writeExtents(extents: [[0, 4096], [8192, 512]])), .data([UInt8](repeating: 9, count: 64)), .end,
        message(ControlRequest.changelist(from: .snapshot(1), to: .origin, start: 0, limit: 100)),
        message(ControlRequest.readRanges(snapshot: 3, ranges: [[0, 10], [100, 20]])),
        message(ControlRequest.check(repair: false)), message(ControlRequest.metrics),
    ])
    let info = ServerInfo(volume: "vol", storePath: "/s", originPath: "/o", processID: 42, blockFileDirectory: "/b",
                          nbdSocket: "/n", nbdListen: "127.0.0.1:10809", features: [ServerInfo.featureMetrics],
                          protocolVersion: ControlProtocol.version, release: ControlProtocol.release)
    let replies = frames([
        message(ControlReply.ok(.server(info))), message(ControlReply.ok(.count(12))), message(ControlReply.ok(.ranges([[1, 5]]))),
        message(ControlReply.ok(.text("# HELP x\n"))), message(ControlReply.ok(.none)),
        message(ControlReply.failed(ControlFailure(VolumeError.inUse("snapshot 3 is in use")))),
    ])
    try Data([0] + requests).write(to: URL(fileURLWithPath: directory + "/requests"))
    try Data([1] + replies).write(to: URL(fileURLWithPath: directory + "/replies"))
}

@_cdecl("control_fuzz_main")
public func controlFuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    fuzzMain(argc, argv, corpus: ("ZUMA_CONTROL_FUZZ_CORPUS", makeCorpus)) { fuzz($0, $1) }
}
