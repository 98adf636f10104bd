// `ddsnap delta send` and `ddsnap delta listen`: a delta stream between hosts, over TLS 1.3
// with pinned keys (docs/FORMAT.md, "Delta streams between hosts"). The sender encodes
// straight into the connection; the listener applies as the bytes arrive, exactly as
// `delta apply` does (a cut or forged stream leaves the replica at its last snapshot), and
// answers with one line of JSON.

import ArgumentParser
import Foundation
import NIOPosix
import Replication
import SnapStore
import Transport
import VolumeInterface

/// The listener's answer to one stream.
struct DeltaReply: Codable {
    var ok: Bool
    var message: String
    /// The snapshot the replica now holds (when ok).
    var snapshot: UInt64?
}

struct IdentityOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The peer's key fingerprint (SHA256:..., what 'zumastor key' prints on it).", valueName: "fingerprint"))
    var key: String

    @Option(help: "This host's key directory (default: /etc/zumastor, under ZUMASTOR_ROOT).")
    var identity: String?

    func validate() throws {
        guard KeyFingerprint(parsing: key) != nil else {
            throw ValidationError("--key '\(key)' is not a key fingerprint (SHA256: and 43 base64 characters, as 'zumastor key' prints it)")
        }
    }

    var pinned: KeyFingerprint { KeyFingerprint(parsing: key)! }

    func tls() throws -> PinnedTLS {
        let directory = identity ?? (ProcessInfo.processInfo.environment["ZUMASTOR_ROOT"] ?? "") + "/etc/zumastor"
        return try PinnedTLS(identity: HostIdentity.loadOrCreate(directory: directory))
    }
}

struct DeltaSend: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Send the delta stream from FROM to TO (or all of TO) to a host running 'ddsnap delta listen'.",
        discussion: "Exits 0 once the replica holds TO, and non-zero with the replica's reason when it refused the stream.")

    @OptionGroup var store: StoreOptionsGroup
    @Argument(help: ArgumentHelp("[FROM] TO HOST[:PORT]: the base (omit for a full stream), the target, and the listener.", valueName: "args"))
    var words: [String]
    @OptionGroup var peer: IdentityOptions
    @Option(help: "none, lzma, lzma:LEVEL (0-9), zstd or zstd:LEVEL (1-19).") var compress = "lzma"
    @Flag(help: "No progress on standard error.") var quiet = false

    func validate() throws {
        guard (2...3).contains(words.count) else { throw ValidationError("give [FROM] TO HOST[:PORT]") }
        for w in words.dropLast() { _ = try parseTag(w) }
        _ = try Endpoint(parsing: words.last!)
        _ = try Compression.parse(compress)
    }

    func run() throws {
        let tags = try words.dropLast().map(parseTag)
        let endpoint = try Endpoint(parsing: words.last!)
        let source = try store.open()
        let encoder = DeltaEncoder(source: source, base: tags.count == 2 ? tags[0] : nil, target: tags.last!,
                                   compression: try Compression.parse(compress))
        if !quiet { encoder.progress = Progress(label: "delta send", interactive: isatty(2) == 1) }
        let header = try encoder.makeHeader()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let connection = try BlockingConnection.connect(host: endpoint.host, port: endpoint.port, tls: try peer.tls(),
                                                        expected: peer.pinned, group: group)
        defer { connection.close() }
        do {
            try encoder.encode(header: header) { try connection.write($0) }
            try connection.finishWriting()
        } catch let sending {
            // The listener may have refused part way and said why before it closed.
            if let reply = try? readReply(connection), !reply.ok { throw DeltaError.refused(reply.message) }
            throw sending
        }
        let reply = try readReply(connection)
        guard reply.ok else { throw DeltaError.refused(reply.message) }
        print(reply.message)
    }

    private func readReply(_ connection: BlockingConnection) throws -> DeltaReply {
        let bytes = try connection.readAll(limit: 64 << 10)
        guard let reply = try? JSONDecoder().decode(DeltaReply.self, from: Data(bytes)) else {
            throw TransportError.unreachable("\(connection.peer) answered with something other than a delta reply")
        }
        return reply
    }
}

struct DeltaListen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "listen",
        abstract: "Apply delta streams sent by 'ddsnap delta send' from the host whose key is pinned, to the replica STORE.",
        discussion: "Serves one sender at a time until killed (or one stream with --once); any other key is refused and logged with its address.")

    @OptionGroup var store: StoreOptionsGroup
    @Argument(help: "[ADDRESS:]PORT to listen on (default address: every one).") var listen: String
    @OptionGroup var peer: IdentityOptions
    @Flag(help: "Apply one stream, then exit (non-zero if it was refused).") var once = false

    func run() throws {
        let endpoint = try Endpoint(parsing: listen.contains(":") || listen.hasPrefix("[") ? listen : "0.0.0.0:" + listen)
        let replica = try store.open()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let pinned = peer.pinned
        let listener = try BlockingListener(host: endpoint.host, port: endpoint.port, tls: try peer.tls(), group: group,
                                            connectionsMax: 4) { address, shown in
            guard shown == pinned else {
                printError("ddsnap: refused \(address): its key \(shown?.description ?? "(none shown)") is not the pinned \(pinned)")
                return false
            }
            return true
        }
        defer { listener.close() }
        printError("ddsnap: listening on \(Endpoint(host: endpoint.host, port: listener.port)) for \(pinned)")
        while let connection = listener.accept() {
            let reply = apply(connection, to: replica)
            if let bytes = try? JSONEncoder().encode(reply) {
                try? bytes.withUnsafeBytes { try connection.write($0) }
                try? connection.finishWriting()
            }
            connection.close()
            print("\(connection.peer): \(reply.message)")
            if once {
                if !reply.ok { throw ExitCode.failure }
                return
            }
        }
    }

    private func apply(_ connection: BlockingConnection, to replica: any VolumeAccess) -> DeltaReply {
        do {
            let applier = DeltaApplier(replica: replica)
            applier.referenceReader = referenceReader(for: replica)
            let outcome = try applier.apply { try connection.read(into: $0) }
            let t = outcome.header.target
            let message = outcome.alreadyApplied ? "the replica already holds snapshot \(t.tag)"
                : "applied snapshot \(t.tag) (\(outcome.trailer.dataChunks) chunks of data, \(outcome.trailer.zeroChunks) zero) \(outcome.header.base.map { "on snapshot \($0.tag)" } ?? "as a full copy")"
            return DeltaReply(ok: true, message: message, snapshot: t.tag)
        } catch {
            return DeltaReply(ok: false, message: "\(error)", snapshot: nil)
        }
    }
}
