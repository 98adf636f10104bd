// `ddsnap delta`: the chunks changed between two snapshots, and delta streams of them —
// `ddsnap delta create STORE A B | ssh host ddsnap delta apply STORE` replicates B.

import ArgumentParser
import Foundation
import Replication
import SnapStore
import VolumeServer

struct Delta: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delta",
        abstract: "Changed-chunk lists and delta streams between snapshots (replication on files and pipes).",
        subcommands: [DeltaChangelist.self, DeltaCreate.self, DeltaApply.self, DeltaSend.self, DeltaListen.self])
}

struct DeltaChangelist: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "changelist",
        abstract: "The chunks that differ between snapshots FROM and TO, in order (metadata only).")

    @OptionGroup var store: StoreOptionsGroup
    @Argument(help: "The base snapshot.", transform: parseTag) var from: UInt64
    @Argument(help: "The later snapshot.", transform: parseTag) var to: UInt64
    @Flag(help: "Print JSON: {from, to, chunkSize, chunks: [...], count}.") var json = false

    func run() throws {
        let s = try store.open()
        let out = Output()
        guard json else {
            try s.changedChunks(from: .snapshot(from), to: .snapshot(to)) { try out.line(String($0)) }
            return try out.flush()
        }
        // Streamed as it is found: the list is never held whole.
        try out.line("{\"from\": \(from), \"to\": \(to), \"chunkSize\": \(try s.status().chunkSizeBytes), \"chunks\": [")
        var count: UInt64 = 0
        try s.changedChunks(from: .snapshot(from), to: .snapshot(to)) { chunk in
            try out.line((count == 0 ? "  " : ", ") + String(chunk))
            count += 1
        }
        try out.line("], \"count\": \(count)}")
        try out.flush()
    }
}

struct DeltaCreate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Write the delta stream from snapshot FROM to snapshot TO (without FROM: all of TO).",
        discussion: """
            Only the chunks that changed between FROM and TO are sent; a full stream sends every \
            chunk of TO, zero chunks as zero records. With -o FILE the stream is written to FILE.partial \
            and renamed when complete.
            """)

    @OptionGroup var store: StoreOptionsGroup
    @Argument(help: ArgumentHelp("[FROM] TO: the base snapshot (omit for a full stream) and the target.", valueName: "tag"),
              transform: parseTag)
    var tags: [UInt64]
    @Option(name: [.customShort("o"), .long], help: "Write here ('-': standard output, the default).") var output = "-"
    @Option(help: "none, lzma, lzma:LEVEL (0-9), zstd or zstd:LEVEL (1-19); records are compressed only when that makes them smaller.")
    var compress = "none"
    @Flag(help: "No progress on standard error.") var quiet = false

    func validate() throws {
        guard (1...2).contains(tags.count) else { throw ValidationError("give TO, or FROM and TO") }
        _ = try Compression.parse(compress)
    }

    func run() throws {
        let compression = try Compression.parse(compress)
        let s = try store.open()
        if output == "-" && isatty(1) == 1 {
            throw ValidationError("refusing to write a delta stream to a terminal: use -o FILE or a pipe")
        }
        let encoder = DeltaEncoder(source: s, base: tags.count == 2 ? tags[0] : nil, target: tags.last!, compression: compression)
        if !quiet { encoder.progress = Progress(label: "delta create", interactive: isatty(2) == 1) }
        let header = try encoder.makeHeader()
        let (fd, temporary) = try openOutput(output)
        let out = Output(fd: fd, path: temporary ?? "standard output")
        do {
            try encoder.encode(header: header) { try out.write($0) }
            try out.flush()
            if let temporary {
                guard fsync(fd) == 0, rename(temporary, output) == 0 else {
                    throw StoreError.io(operation: "write", path: output, errno: errno)
                }
                close(fd)
            }
        } catch {
            if let temporary { close(fd); unlink(temporary) }
            throw error
        }
    }
}

/// FILE.partial, created for writing, or standard output for "-".
private func openOutput(_ path: String) throws -> (Int32, String?) {
    if path == "-" { return (1, nil) }
    let temporary = path + ".partial"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw StoreError.io(operation: "create", path: temporary, errno: errno) }
    return (fd, temporary)
}

struct DeltaApply: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Apply a delta stream to the replica STORE: its origin becomes the target and the target snapshot is created.",
        discussion: """
            The replica must hold the stream's base snapshot (checked by identity and by checksums \
            of its contents before anything is written); a full stream needs an empty replica (or one \
            of the same volume). If the stream is damaged or cut, the replica stays at its previous \
            snapshot; applying a complete stream again finishes the job.
            """)

    @OptionGroup var store: StoreOptionsGroup
    @Option(name: [.customShort("i"), .long], help: "Read from here ('-': standard input, the default).") var input = "-"
    @Flag(help: "No progress on standard error.") var quiet = false

    func run() throws {
        let fd: Int32 = input == "-" ? 0 : open(input, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StoreError.io(operation: "open", path: input, errno: errno) }
        defer { if fd != 0 { close(fd) } }
        let path = input == "-" ? "standard input" : input
        let replica = try store.open()
        let applier = DeltaApplier(replica: replica)
        applier.referenceReader = referenceReader(for: replica)
        if !quiet { applier.progress = Progress(label: "delta apply", interactive: isatty(2) == 1) }
        let outcome = try applier.apply { try readFull(fd, $0, path: path) }
        let t = outcome.header.target
        if outcome.alreadyApplied {
            print("the replica already holds snapshot \(t.tag); nothing to do")
        } else {
            print("applied snapshot \(t.tag) (\(outcome.trailer.dataChunks) chunks of data, \(outcome.trailer.zeroChunks) zero) \(outcome.header.base.map { "on snapshot \($0.tag)" } ?? "as a full copy")")
        }
    }
}
