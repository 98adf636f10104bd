// Timing, statistics, memory and result records.

import CSupport
import Foundation

func nowSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func timed(_ body: () throws -> Void) rethrows -> Double {
    let start = nowSeconds()
    try body()
    return nowSeconds() - start
}

struct Stats: Encodable {
    var median: Double
    var p99: Double
    var min: Double
    var max: Double
    var count: Int
    init(_ samples: [Double]) {
        let s = samples.sorted()
        count = s.count
        median = s.isEmpty ? 0 : s[s.count / 2]
        p99 = s.isEmpty ? 0 : s[Swift.min(s.count - 1, Int((Double(s.count) * 0.99).rounded(.up)) - 1)]
        min = s.first ?? 0
        max = s.last ?? 0
    }
}

/// Peak resident memory since the last reset, in KiB (VmHWM).
func peakResidentKiB() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
    }
    return 0
}

/// Resets the peak so each case reports its own: heap that earlier cases freed is given
/// back to the system first (glibc keeps it otherwise, and it would count here).
func resetPeakResident() {
    _ = zuma_release_free_memory()
    try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
}

/// Drops the page cache (root only) so reads come from the disk.
func dropCaches(_ enabled: Bool) {
    guard enabled else { return }
    sync()
    try? "3".write(toFile: "/proc/sys/vm/drop_caches", atomically: false, encoding: .utf8)
}

/// One measured figure, with its reference measured in the same run.
struct Result: Encodable {
    var curve: String
    var name: String
    var snapshots: Int
    var unit: String
    var value: Double
    var reference: Double?
    var ratio: Double?
    var stats: Stats?
    var syncs: Int?
    var peakResidentKiB: Int
    var note: String?
}

final class Results {
    var all: [Result] = []
    func add(_ r: Result) {
        all.append(r)
        var line = "\(r.curve) \(r.name) @\(r.snapshots): \(String(format: "%.3f", r.value)) \(r.unit)"
        if let ref = r.reference, let ratio = r.ratio { line += String(format: " (reference %.3f, ratio %.2fx)", ref, ratio) }
        if let s = r.stats { line += String(format: " [median %.3f p99 %.3f min %.3f max %.3f ms]", s.median * 1000, s.p99 * 1000, s.min * 1000, s.max * 1000) }
        line += " rss \(r.peakResidentKiB) KiB"
        print(line)
        flushOutput()
    }
}

/// A deterministic generator for offsets and data.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func fillRandom(_ buffer: inout [UInt8], _ rng: inout SplitMix) {
    buffer.withUnsafeMutableBytes { b in
        let words = b.bindMemory(to: UInt64.self)
        for i in 0..<words.count { words[i] = rng.next() }
    }
}

/// Flushes standard output (progress lines appear as they happen when piped).
func flushOutput() { fflush(nil) }
