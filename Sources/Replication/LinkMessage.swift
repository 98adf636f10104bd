// The replication protocol between hosts (docs/FORMAT.md, "Replication protocol"): the
// messages that open a cycle, carry its delta stream and close it. A message is a u32 LE body
// length, a u8 type, then the body; every field is little-endian. Decoding checks every length
// and value, so a malformed or forged message is refused with its reason and changes nothing.

import SnapStore

public enum LinkProtocol {
    /// The versions this build speaks; HELLO offers a range, WELCOME picks one. Version 2 has
    /// the messages of version 1; its receiver also reads delta streams whose records are
    /// compressed against the base (stream feature 8).
    public static let versionMin: UInt16 = 1
    public static let versionMax: UInt16 = 2
    /// The largest body of any message (a DATA message carries at most `dataBytesMax`).
    public static let bodyBytesMax = 2 << 20
    public static let dataBytesMax = 1 << 20
    /// Snapshots an OFFER lists at most (the newest ones).
    public static let offeredSnapshotsMax = 4096
    static let textBytesMax = 4096
}

/// Who sends the stream on a connection: the host that connected (a push) or the one that
/// listens (a pull).
public enum LinkRole: UInt8, Sendable {
    case connectorSends = 1
    case listenerSends = 2
}

/// Where an interrupted transfer stopped: every record below `nextChunk` of the stream from
/// `base` to `target` is durable on the replica.
public struct ResumePoint: Equatable, Sendable, Codable {
    public var volumeUUID: [UInt8]
    public var base: UInt64?
    public var target: UInt64
    public var targetCreatedNanoseconds: UInt64
    public var nextChunk: UInt64

    public init(volumeUUID: [UInt8], base: UInt64?, target: UInt64, targetCreatedNanoseconds: UInt64, nextChunk: UInt64) {
        (self.volumeUUID, self.base, self.target, self.targetCreatedNanoseconds, self.nextChunk) = (volumeUUID, base, target, targetCreatedNanoseconds, nextChunk)
    }
}

public enum LinkMessage: Equatable, Sendable {
    /// The connector's opening: the versions it speaks, who sends, the volume on the listener's
    /// side and the connector's own volume.
    case hello(versionMin: UInt16, versionMax: UInt16, role: LinkRole, volume: String, peerVolume: String)
    case welcome(version: UInt16)
    /// Either side ends the cycle with a reason.
    case refuse(String)
    /// The receiver's state: its volume (zeros: none yet), chunk size, the snapshots it holds
    /// (newest first, at most `offeredSnapshotsMax`) and where an interrupted transfer stopped.
    case offer(volumeUUID: [UInt8], chunkSizeBytes: UInt32, originCapacityBytes: UInt64, snapshots: [SnapshotIdentity], resume: ResumePoint?)
    /// The sender's decision: the stream of `target` follows from chunk `startChunk` (a
    /// resumed transfer starts past 0), or (`upToDate`) the receiver already holds the newest.
    case start(target: UInt64, startChunk: UInt64, upToDate: Bool)
    case data([UInt8])
    /// The stream is complete.
    case end
    /// The receiver's verdict: it now holds `snapshot` (ok), or why not.
    case done(ok: Bool, snapshot: UInt64, message: String)

    public enum Kind: UInt8 {
        case hello = 1, welcome, refuse, offer, start, data, end, done
    }

    /// The whole message: length, type, body.
    public func encoded() -> [UInt8] {
        var w = LinkWriter()
        let kind: Kind
        switch self {
        case let .hello(lo, hi, role, volume, peer):
            kind = .hello
            w.u16(lo); w.u16(hi); w.u8(role.rawValue); w.text(volume); w.text(peer)
        case let .welcome(v):
            kind = .welcome
            w.u16(v)
        case let .refuse(text):
            kind = .refuse
            w.text(text)
        case let .offer(uuid, cs, capacity, snapshots, resume):
            kind = .offer
            w.bytes(uuid.count == 16 ? uuid : [UInt8](repeating: 0, count: 16))
            w.u32(cs); w.u64(capacity)
            w.u32(UInt32(snapshots.count))
            for s in snapshots { w.identity(s) }
            if let r = resume {
                w.u8(r.base == nil ? 1 : 3)
                w.bytes(r.volumeUUID.count == 16 ? r.volumeUUID : [UInt8](repeating: 0, count: 16))
                w.u64(r.base ?? 0); w.u64(r.target); w.u64(r.targetCreatedNanoseconds); w.u64(r.nextChunk)
            } else {
                w.u8(0)
            }
        case let .start(target, startChunk, upToDate):
            kind = .start
            w.u8(upToDate ? 1 : 0); w.u64(target); w.u64(startChunk)
        case let .data(bytes):
            kind = .data
            w.bytes(bytes)
        case .end:
            kind = .end
        case let .done(ok, snapshot, text):
            kind = .done
            w.u8(ok ? 1 : 0); w.u64(snapshot); w.text(text)
        }
        var out: [UInt8] = []
        out.reserveCapacity(5 + w.out.count)
        withUnsafeBytes(of: UInt32(w.out.count).littleEndian) { out += $0 }
        out.append(kind.rawValue)
        return out + w.out
    }

    /// The header of a DATA message of `count` bytes (the bytes follow it).
    public static func dataHeader(count: Int) -> [UInt8] {
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt32(count).littleEndian) { out += $0 }
        out.append(Kind.data.rawValue)
        return out
    }

    /// Decodes a body of type `type` (the five-byte prefix already read and checked).
    public static func decode(type: UInt8, body: [UInt8]) throws -> LinkMessage {
        guard let kind = Kind(rawValue: type) else { throw LinkError.malformed("unknown message type \(type)") }
        var r = LinkReader(body)
        let m: LinkMessage
        switch kind {
        case .hello:
            let lo = try r.u16(), hi = try r.u16()
            guard lo <= hi else { throw LinkError.malformed("HELLO offers versions \(lo) to \(hi)") }
            guard let role = LinkRole(rawValue: try r.u8()) else { throw LinkError.malformed("HELLO names an unknown role") }
            m = .hello(versionMin: lo, versionMax: hi, role: role, volume: try r.name(), peerVolume: try r.name())
        case .welcome:
            m = .welcome(version: try r.u16())
        case .refuse:
            m = .refuse(try r.text())
        case .offer:
            let uuid = try r.bytes(16), cs = try r.u32(), capacity = try r.u64()
            let count = Int(try r.u32())
            guard count <= LinkProtocol.offeredSnapshotsMax else { throw LinkError.malformed("OFFER lists \(count) snapshots (at most \(LinkProtocol.offeredSnapshotsMax))") }
            var snapshots: [SnapshotIdentity] = []
            for _ in 0..<count { snapshots.append(try r.identity()) }
            let flags = try r.u8()
            var resume: ResumePoint?
            switch flags {
            case 0: break
            case 1, 3:
                let u = try r.bytes(16), base = try r.u64(), target = try r.u64(), created = try r.u64(), next = try r.u64()
                resume = ResumePoint(volumeUUID: u, base: flags == 3 ? base : nil, target: target, targetCreatedNanoseconds: created, nextChunk: next)
            default:
                throw LinkError.malformed("OFFER has resume flags \(flags)")
            }
            m = .offer(volumeUUID: uuid, chunkSizeBytes: cs, originCapacityBytes: capacity, snapshots: snapshots, resume: resume)
        case .start:
            let flag = try r.u8()
            guard flag <= 1 else { throw LinkError.malformed("START has flags \(flag)") }
            m = .start(target: try r.u64(), startChunk: try r.u64(), upToDate: flag == 1)
        case .data:
            guard body.count <= LinkProtocol.dataBytesMax else { throw LinkError.malformed("DATA of \(body.count) bytes") }
            return .data(body)
        case .end:
            m = .end
        case .done:
            let ok = try r.u8()
            guard ok <= 1 else { throw LinkError.malformed("DONE has flag \(ok)") }
            m = .done(ok: ok == 1, snapshot: try r.u64(), message: try r.text())
        }
        guard r.at == body.count else { throw LinkError.malformed("\(kind) carries \(body.count - r.at) bytes too many") }
        return m
    }
}

public enum LinkError: Error, Equatable, CustomStringConvertible, Sendable {
    case malformed(String)
    /// The peer ended the cycle, saying why.
    case refused(String)
    /// The peer said something out of order.
    case unexpected(String)

    public var description: String {
        switch self {
        case let .malformed(text): return "malformed replication message: \(text)"
        case let .refused(text): return text
        case let .unexpected(text): return "unexpected replication message: \(text)"
        }
    }
}

struct LinkWriter {
    var out: [UInt8] = []
    mutating func u8(_ v: UInt8) { out.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
    mutating func bytes(_ b: [UInt8]) { out += b }
    /// u16 length, then UTF-8 (cut to `textBytesMax`).
    mutating func text(_ s: String) {
        let b = Array(s.utf8.prefix(LinkProtocol.textBytesMax))
        u16(UInt16(b.count))
        out += b
    }
    mutating func identity(_ s: SnapshotIdentity) {
        var b = [UInt8](repeating: 0, count: 96)
        b.withUnsafeMutableBytes { s.encode($0, at: 0) }
        out += b
    }
}

struct LinkReader {
    let body: [UInt8]
    var at = 0
    init(_ body: [UInt8]) { self.body = body }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n <= body.count - at else { throw LinkError.malformed("a message ends early") }
        defer { at += n }
        return body[at..<(at + n)]
    }
    mutating func u8() throws -> UInt8 { try take(1).first! }
    mutating func u16() throws -> UInt16 { try take(2).reversed().reduce(0) { $0 << 8 | UInt16($1) } }
    mutating func u32() throws -> UInt32 { try take(4).reversed().reduce(0) { $0 << 8 | UInt32($1) } }
    mutating func u64() throws -> UInt64 { try take(8).reversed().reduce(0) { $0 << 8 | UInt64($1) } }
    mutating func bytes(_ n: Int) throws -> [UInt8] { Array(try take(n)) }
    mutating func text() throws -> String {
        let n = Int(try u16())
        guard n <= LinkProtocol.textBytesMax else { throw LinkError.malformed("a text of \(n) bytes") }
        let b = try take(n)
        guard let s = String(validating: b, as: UTF8.self) else { throw LinkError.malformed("a text that is not UTF-8") }
        return s
    }
    /// A volume name: 1 to 64 bytes of letters, digits, '.', '_' and '-', not starting with
    /// '.' or '-' (what `define volume` accepts).
    mutating func name() throws -> String {
        let s = try text()
        guard (1...64).contains(s.utf8.count), s.utf8.allSatisfy({ isNameByte($0) }), s.first != ".", s.first != "-" else {
            throw LinkError.malformed("'\(s.prefix(64))' is not a volume name")
        }
        return s
    }
    mutating func identity() throws -> SnapshotIdentity {
        let b = try take(96)
        return try Array(b).withUnsafeBytes { p in
            do { return try SnapshotIdentity.decode(p, at: 0, what: "offered") } catch { throw LinkError.malformed("\(error)") }
        }
    }
}

private func isNameByte(_ c: UInt8) -> Bool {
    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x5f || c == 0x2d
}
