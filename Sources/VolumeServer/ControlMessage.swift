// The control protocol spoken on a server's Unix socket (docs/FORMAT.md, "Control protocol").
//
// A connection carries frames: u32 LE length (of what follows), u8 version (1), u8 kind,
// then the payload. Kind 1 is a message (JSON of ControlRequest or ControlReply), kind 2 a
// piece of a data stream (raw bytes; for a changelist, u64 LE chunk numbers), kind 3 the end
// of a data stream. A client sends one request at a time and reads frames until the reply
// message; `read`, `readRanges` and `changelist` replies are preceded by data frames, a `write` or
// `writeExtents` request is followed by data frames and an end frame.

import Foundation
import SnapStore
import VolumeInterface

/// The versions a client and a server tell each other in `hello`, so that a request one of
/// them does not know is explained ("restart the server after the upgrade") rather than
/// reported as malformed.
public enum ControlProtocol {
    /// The control protocol this build speaks: 1, the first; 2 adds the versions in `hello`.
    public static let version = 2
    /// This build's version, as `--version` prints it.
    public static let release = "0.1.0"
}

public enum ControlRequest: Codable, Equatable, Sendable {
    /// `client`: the client's control protocol (absent: 1).
    case hello(client: Int?)
    case status
    case list
    case snapshot(tag: UInt64)
    case create(tag: UInt64, name: String, priority: Int8, created: UInt64?)
    case delete(tag: UInt64)
    case usecount(tag: UInt64, delta: Int64)
    case priority(tag: UInt64, priority: Int8)
    case usage(tag: UInt64)
    case read(snapshot: UInt64?, offset: UInt64, length: UInt64?)
    /// Several ranges, [offset, length] pairs, streamed back to back.
    case readRanges(snapshot: UInt64?, ranges: [[UInt64]])
    /// `flush` nil: true.
    case write(snapshot: UInt64?, offset: UInt64, flush: Bool?)
    /// Origin writes at [offset, length] extents, their bytes back to back in the data frames
    /// that follow: one commit covers every copy-out they need. Durable after `flush`.
    case writeExtents(extents: [[UInt64]])
    case flush
    case changelist(from: StoreSide, to: StoreSide, start: UInt64?, limit: UInt64?)
    case adoptUUID(uuid: String)
    case dataRanges(snapshot: UInt64?, first: UInt64, end: UInt64)
    case revert(tag: UInt64)
    case resizeOrigin(bytes: UInt64)
    case resizeStore(bytes: UInt64)
    case check(repair: Bool)
    case attach(tag: UInt64?, writable: Bool)
    case detach(tag: UInt64?)
    case devices
    /// The server's metrics in Prometheus' text format (feature `metrics`).
    case metrics
}

/// What the server says about itself.
public struct ServerInfo: Codable, Equatable, Sendable {
    public var volume: String
    public var storePath: String
    public var originPath: String
    public var processID: Int32
    public var blockFileDirectory: String
    public var nbdSocket: String?
    public var nbdListen: String?
    /// Requests beyond the first version's that this server takes (absent: none), so that a
    /// newer client asks an older server only what it knows.
    public var features: [String]?
    /// The server's control protocol (absent: 1) and its build (absent: before 2).
    public var protocolVersion: Int?
    public var release: String?

    /// The server takes `writeExtents`.
    public static let featureWriteExtents = "writeExtents"
    /// The server answers `metrics`.
    public static let featureMetrics = "metrics"
}

/// A device the server has attached.
public struct AttachedDevice: Codable, Equatable, Sendable {
    /// nil: the origin.
    public var tag: UInt64?
    public var loopDevice: String
    /// `/dev/mapper/<vol>` or `/dev/mapper/<vol>(<tag>)`.
    public var name: String
    public var writable: Bool
    public var directIO: Bool
}

public enum ControlResult: Codable, Equatable, Sendable {
    case none
    case server(ServerInfo)
    case status(StoreStatus)
    case snapshots([SnapshotInfo])
    case snapshot(SnapshotInfo?)
    case count(UInt64)
    case usecount(UInt32)
    case usage(SnapshotUsage)
    case check(CheckReport)
    case device(AttachedDevice)
    case devices([AttachedDevice])
    /// Chunk ranges as [first, end) pairs.
    case ranges([[UInt64]])
    case text(String)
}

extension ControlResult {
    /// The value the result carries (`()` for `.none`): a client that knows the type it asked
    /// for takes it with one cast (`ControlClient.ask`) instead of a match per request.
    var value: Any {
        switch self {
        case .none: return ()
        case let .server(v): return v
        case let .status(v): return v
        case let .snapshots(v): return v
        case let .snapshot(v): return v as Any
        case let .count(v): return v
        case let .usecount(v): return v
        case let .usage(v): return v
        case let .check(v): return v
        case let .device(v): return v
        case let .devices(v): return v
        case let .ranges(v): return v
        case let .text(v): return v
        }
    }
}

extension ControlRequest {
    /// The request's name on the wire (its case), for messages and logs.
    var name: String { "\(self)".prefix(while: { $0 != "(" }).description }
}

/// An error carried back to the client as the same error value the server saw.
public enum ControlFailure: Codable, Equatable, Sendable {
    case store(StoreError)
    case volume(VolumeError)

    public init(_ error: Error) {
        switch error {
        case let e as StoreError: self = .store(e)
        case let e as VolumeError: self = .volume(e)
        default: self = .volume(.system(String(describing: error)))
        }
    }

    public var error: Error {
        switch self {
        case let .store(e): return e
        case let .volume(e): return e
        }
    }
}

public enum ControlReply: Codable, Equatable, Sendable {
    case ok(ControlResult)
    case failed(ControlFailure)
}

/// One frame of the control protocol.
public enum ControlFrame: Equatable, Sendable {
    case message([UInt8])
    case data([UInt8])
    case end

    public static let version: UInt8 = 1
    /// Largest payload accepted: a data piece of 1 MiB plus room; a message is far smaller.
    public static let payloadBytesMax = (1 << 20) + 4096
    static let headerBytes = 6

    var kind: UInt8 {
        switch self {
        case .message: return 1
        case .data: return 2
        case .end: return 3
        }
    }

    var payload: [UInt8] {
        switch self {
        case let .message(p), let .data(p): return p
        case .end: return []
        }
    }

    /// The frame's bytes on the wire.
    public func encoded() -> [UInt8] {
        let p = payload
        var out = ControlFrame.header(kind: kind, payloadCount: p.count)
        out.append(contentsOf: p)
        return out
    }

    /// The six header bytes of a frame: length (payload + 2, little-endian), version, kind.
    static func header(kind: UInt8, payloadCount: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(ControlFrame.headerBytes + payloadCount)
        let length = UInt32(payloadCount + 2)
        for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: length >> (8 * UInt32(i)))) }
        out.append(ControlFrame.version)
        out.append(kind)
        return out
    }

    /// Checks a header (length, version, kind) and says how many payload bytes follow.
    static func payloadLength(header: [UInt8]) throws -> (kind: UInt8, count: Int) {
        let length = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16 | Int(header[3]) << 24
        guard length >= 2 else { throw VolumeError.protocolViolation("frame length \(length) is shorter than its header") }
        guard header[4] == version else {
            throw VolumeError.protocolViolation("frame version \(header[4]) is not supported (this build speaks version \(version))")
        }
        guard (1...3).contains(header[5]) else { throw VolumeError.protocolViolation("unknown frame kind \(header[5])") }
        guard length - 2 <= payloadBytesMax else {
            throw VolumeError.protocolViolation("frame of \(length - 2) bytes is larger than the limit of \(payloadBytesMax)")
        }
        return (header[5], length - 2)
    }

    static let dataKind: UInt8 = 2

    static func make(kind: UInt8, payload: [UInt8]) throws -> ControlFrame {
        switch kind {
        case 1: return .message(payload)
        case dataKind: return .data(payload)
        default:
            guard payload.isEmpty else { throw VolumeError.protocolViolation("an end frame carries no payload") }
            return .end
        }
    }
}

enum ControlCoding {
    static func encode<T: Encodable>(_ value: T) -> [UInt8] {
        // Encoding our own value types cannot fail.
        Array(try! JSONEncoder().encode(value))
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw VolumeError.protocolViolation("malformed \(type == ControlRequest.self ? "request" : "reply"): \(describeDecoding(error))")
        }
    }

    private static func describeDecoding(_ error: Error) -> String {
        guard let e = error as? DecodingError else { return "\(error)" }
        switch e {
        case let .dataCorrupted(c): return c.debugDescription
        case let .keyNotFound(key, _): return "missing field '\(key.stringValue)'"
        case let .typeMismatch(_, c), let .valueNotFound(_, c): return "\(c.debugDescription) at '\(c.codingPath.map(\.stringValue).joined(separator: "."))'"
        @unknown default: return "\(e)"
        }
    }
}
