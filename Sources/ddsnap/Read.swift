import ArgumentParser
import SnapStore

struct Read: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Copy bytes of the origin or of a snapshot to standard output.")

    @OptionGroup var store: StoreOptionsGroup
    @Option(help: "Read this snapshot instead of the origin.", transform: parseTag) var snapshot: UInt64?
    @Option(help: "Start here (bytes; K/M/G suffixes).", transform: parseSize) var offset: UInt64 = 0
    @Option(help: "Bytes to read (default: to the end).", transform: parseSize) var length: UInt64?

    func run() throws {
        let s = try store.open()
        let size: UInt64
        if let snapshot {
            guard let info = s.snapshot(tag: snapshot) else { throw StoreError.snapshotMissing(snapshot) }
            size = info.originSizeBytes
        } else {
            size = s.originSizeBytes
        }
        guard offset <= size else { throw StoreError.outOfRange("offset \(offset) is past the end at \(formatCount(size)) bytes") }
        let total = length ?? (size - offset)
        guard total <= size - offset else {
            throw StoreError.outOfRange("\(total) bytes from offset \(offset) run past the end at \(formatCount(size)) bytes")
        }
        let out = Output()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var done: UInt64 = 0
        while done < total {
            let n = Int(min(UInt64(buffer.count), total - done))
            try buffer.withUnsafeMutableBytes { b in
                let piece = UnsafeMutableRawBufferPointer(rebasing: b[0..<n])
                try s.read(snapshot: snapshot, offset: offset + done, into: piece)
                try out.write(UnsafeRawBufferPointer(piece))
            }
            done += UInt64(n)
        }
        try out.flush()
    }
}
