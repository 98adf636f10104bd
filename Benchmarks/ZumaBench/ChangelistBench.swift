// Curve 3: changed-chunk list time between two snapshots as a function of the number of
// changed chunks, on a large sparse volume. For each k, snapshot A, write k chunks (in runs of
// up to 256 spread over the whole volume), snapshot B; then time changedChunks(A, B), cold
// (a freshly opened store) and warm (median of 5).

import Foundation
import SnapStore

struct ChangelistConfig {
    var directory: String
    var volumeBytes: UInt64 = 1 << 40
    var storeBytes: UInt64 = 8 << 30
    var chunkSize = 4096
    var counts = [1, 10, 100, 1000, 10_000, 100_000, 1_000_000]
    var cacheBytes = 32 << 20
}

func runChangelist(_ c: ChangelistConfig, results: Results) throws {
    try FileManager.default.createDirectory(atPath: c.directory, withIntermediateDirectories: true)
    let originPath = c.directory + "/cl-origin", storePath = c.directory + "/cl-store"
    for path in [originPath, storePath] { try? FileManager.default.removeItem(atPath: path) }
    _ = try PlainFile(path: originPath, sizeBytes: c.volumeBytes)
    _ = try PlainFile(path: storePath, sizeBytes: c.storeBytes)
    var options = StoreOptions()
    options.cacheSizeBytes = c.cacheBytes
    try buildChangelistHistory(c, originPath: originPath, storePath: storePath, options: options)
    // Cold: a newly opened store (node cache empty; the page cache is warm).
    resetPeakResident()
    let reopened = try Store(store: BenchDevice(path: storePath), origin: BenchDevice(path: originPath), options: options)
    for (i, k) in c.counts.enumerated() {
        let a = UInt64(2 * i + 1), b = UInt64(2 * i + 2)
        var listed = 0
        let cold = try timed { try reopened.changedChunks(from: .snapshot(a), to: .snapshot(b)) { _ in listed += 1; return true } }
        precondition(listed == k, "changelist of \(k) listed \(listed)")
        var warm: [Double] = []
        for _ in 0..<5 {
            warm.append(try timed { try reopened.changedChunks(from: .snapshot(a), to: .snapshot(b)) { _ in true } })
        }
        let stats = Stats(warm)
        results.add(Result(curve: "changelist", name: "\(k) changed chunks", snapshots: 2 * c.counts.count, unit: "ms",
                           value: stats.median * 1000, reference: nil, ratio: nil, stats: stats, syncs: nil,
                           peakResidentKiB: peakResidentKiB(),
                           note: String(format: "cold (fresh open) %.3f ms; volume %@ bytes, %d KiB chunks", cold * 1000,
                                        formatCount(c.volumeBytes), c.chunkSize / 1024)))
    }
}

/// Builds the snapshot pairs (no syncs: setup). The devices, and their locks, are released
/// when this returns.
private func buildChangelistHistory(_ c: ChangelistConfig, originPath: String, storePath: String, options: StoreOptions) throws {
    let origin = try BenchDevice(path: originPath), storeDevice = try BenchDevice(path: storePath)
    origin.syncEnabled = false
    storeDevice.syncEnabled = false
    let store = try Store.initialize(store: storeDevice, origin: origin, chunkSizeBytes: c.chunkSize, options: options)
    let cs = UInt64(c.chunkSize)
    let volumeChunks = c.volumeBytes / cs
    let runMax = 256
    var data = [UInt8](repeating: 0xA5, count: runMax * c.chunkSize)
    var rng = SplitMix(state: 7)
    fillRandom(&data, &rng)
    for (i, k) in c.counts.enumerated() {
        let a = UInt64(2 * i + 1), b = UInt64(2 * i + 2)
        try store.createSnapshot(tag: a)
        let runs = (k + runMax - 1) / runMax
        var left = k
        for r in 0..<runs {
            let n = min(runMax, left)
            // Spread the runs over the volume; a small per-k shift keeps them apart.
            let chunk = UInt64(r) * (volumeChunks / UInt64(runs)) + UInt64(i) * UInt64(runMax)
            try data.withUnsafeBytes { try store.write(offset: chunk * cs, UnsafeRawBufferPointer(rebasing: $0[0..<(n * c.chunkSize)])) }
            left -= n
        }
        try store.createSnapshot(tag: b)
        print("  changelist setup: \(k) changed chunks between \(a) and \(b)")
        flushOutput()
    }
    try store.flush()
}
