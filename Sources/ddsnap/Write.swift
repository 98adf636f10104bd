import ArgumentParser
import Foundation
import SnapStore

struct Write: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy standard input into the origin or a snapshot (making it writable), then flush.")

    @OptionGroup var store: StoreOptionsGroup
    @Option(help: "Write into this snapshot instead of the origin.", transform: parseTag) var snapshot: UInt64?
    @Option(help: "Start here (bytes; K/M/G suffixes).", transform: parseSize) var offset: UInt64 = 0

    func run() throws {
        let s = try store.open()
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var position = offset
        var total: UInt64 = 0
        while true {
            // Fill the buffer (a pipe returns short reads) so writes stay large.
            var filled = 0
            while filled < buffer.count {
                let n = buffer.withUnsafeMutableBytes { Foundation.read(0, $0.baseAddress! + filled, $0.count - filled) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw StoreError.io(operation: "read", path: "standard input", errno: errno)
                }
                if n == 0 { break }
                filled += n
            }
            if filled == 0 { break }
            try buffer.withUnsafeBytes { try s.write(snapshot: snapshot, offset: position, UnsafeRawBufferPointer(rebasing: $0[0..<filled])) }
            position += UInt64(filled)
            total += UInt64(filled)
            if filled < buffer.count { break }
        }
        try s.flush()
        printError("wrote \(formatCount(total)) bytes at offset \(formatCount(offset)) of \(snapshot.map { "snapshot \($0)" } ?? "the origin")")
    }
}
