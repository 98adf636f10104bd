// Progress of a long transfer on standard error: bytes, chunks, rate and time left, redrawn at
// most once a second on one line, and a last line when it ends.

import Foundation

public final class Progress {
    let label: String
    /// Redraw a line as it goes (a terminal), or print only the last line.
    let interactive: Bool
    private var totalChunks: UInt64 = 0
    private var totalBytes: UInt64 = 0
    private var chunks: UInt64 = 0
    private var bytes: UInt64 = 0
    private var started = Date()
    private var lastDraw = Date.distantPast

    /// Lines on standard error (off: only `observer` hears of it).
    public var prints = true
    /// Told of every advance: chunks and bytes done, chunks in all.
    public var observer: ((_ chunks: UInt64, _ bytes: UInt64, _ totalChunks: UInt64) -> Void)?

    public init(label: String, interactive: Bool) { (self.label, self.interactive) = (label, interactive) }

    public func start(totalChunks: UInt64, totalBytes: UInt64) {
        (self.totalChunks, self.totalBytes) = (totalChunks, totalBytes)
        started = Date()
    }

    public func advance(chunks c: UInt64, bytes b: UInt64) {
        chunks += c
        bytes += b
        observer?(chunks, bytes, totalChunks)
        if prints && interactive && Date().timeIntervalSince(lastDraw) >= 1 { draw(final: false) }
    }

    public func finish() { if prints { draw(final: true) } }

    private func draw(final: Bool) {
        lastDraw = Date()
        let elapsed = max(Date().timeIntervalSince(started), 0.001)
        let rate = Double(bytes) / elapsed
        var line = "\(label): \(mib(bytes)) MiB, \(chunks)\(totalChunks > 0 ? "/\(totalChunks)" : "") chunks, \(mib(UInt64(rate))) MiB/s"
        if final {
            line += String(format: ", %.1f s", elapsed)
        } else if totalBytes > bytes, rate > 0 {
            let left = Int(Double(totalBytes - bytes) / rate)
            line += String(format: ", ETA %d:%02d", left / 60, left % 60)
        }
        FileHandle.standardError.write(Data(((interactive ? "\r" : "") + line + (final ? "\n" : "")).utf8))
    }

    private func mib(_ n: UInt64) -> String { String(format: "%.1f", Double(n) / 1_048_576) }
}
