// Curves 1, 2 and 4 at each snapshot count: origin write throughput (rewrite of protected
// chunks and first write after a snapshot, 4 KiB random and 1 MiB sequential), snapshot
// create/delete latency, and snapshot read throughput (from the store and from the origin),
// each with its plain-file reference from the same run and the case's peak resident memory.
//
// Origin layout, in regions of `regionChunks` chunks: 0 setup (one distinct chunk written per
// snapshot), 1 rewrite, 2 copy-out 4 KiB, 3 copy-out 1 MiB, 4 read from origin.

import Foundation
import SnapStore

struct CurveConfig {
    var directory: String
    var chunkSize = 16 << 10
    var regionChunks = 4096
    var levels = [0, 1, 64, 1000, 10_000, 100_000]
    /// Rewrites of 4 KiB: 16,384 take about 40 ms here, long enough that one stall of the
    /// disk does not decide the ratio (4,096 took 10 ms and moved by 30% from run to run).
    var randomWrites = 16384
    var copyOutWrites = 512
    var createDeleteSamples = 30
    var storeBytes: UInt64 = 4 << 30
    var dropCaches = false
    var cacheBytes = 32 << 20
}

final class CurveBench {
    let c: CurveConfig
    let results: Results
    var store: Store<BenchDevice>!
    var storeDevice: BenchDevice!
    var originDevice: BenchDevice!
    var reference: PlainFile!
    var snapshotCount = 0
    var rng = SplitMix(state: 42)
    var measureTag: UInt64 = 1_000_000_000
    /// Snapshots taken between runs of a copy-out pattern, deleted at the level's end.
    var extraTag: UInt64 = 2_000_000_000
    var extraTags: [UInt64] = []
    var buffer: [UInt8]

    init(_ config: CurveConfig, results: Results) {
        c = config
        self.results = results
        buffer = [UInt8](repeating: 0, count: 1 << 20)
    }

    var cs: UInt64 { UInt64(c.chunkSize) }
    var regionBytes: UInt64 { UInt64(c.regionChunks) * cs }
    func regionStart(_ r: Int) -> UInt64 { UInt64(r) * regionBytes }
    var originBytes: UInt64 { 5 * regionBytes }

    func setUp() throws {
        try FileManager.default.createDirectory(atPath: c.directory, withIntermediateDirectories: true)
        let originPath = c.directory + "/origin", storePath = c.directory + "/store"
        for path in [originPath, storePath, c.directory + "/reference"] { try? FileManager.default.removeItem(atPath: path) }
        _ = try PlainFile(path: originPath, sizeBytes: originBytes)
        // The store is written through once, like a block device: the benchmark measures the
        // store, not the filesystem allocating blocks for a sparse file.
        let storeFile = try PlainFile(path: storePath, sizeBytes: c.storeBytes)
        var zeroOffset: UInt64 = 0
        let zeros = [UInt8](repeating: 0, count: buffer.count)
        while zeroOffset < c.storeBytes {
            storeFile.write(zeros, count: zeros.count, at: zeroOffset)
            zeroOffset += UInt64(zeros.count)
        }
        storeFile.sync()
        reference = try PlainFile(path: c.directory + "/reference", sizeBytes: originBytes)
        originDevice = try BenchDevice(path: originPath)
        storeDevice = try BenchDevice(path: storePath)
        var options = StoreOptions()
        options.cacheSizeBytes = c.cacheBytes
        store = try Store.initialize(store: storeDevice, origin: originDevice, chunkSizeBytes: c.chunkSize, options: options)
        // Fill the origin and the reference with data, so neither measures file allocation.
        var offset: UInt64 = 0
        while offset < originBytes {
            fillRandom(&buffer, &rng)
            try store.write(offset: offset, buffer)
            reference.write(buffer, count: buffer.count, at: offset)
            offset += UInt64(buffer.count)
        }
        try store.flush()
        reference.sync()
    }

    /// Grows to `level` snapshots, each after writing one distinct chunk (no syncs: setup).
    func grow(to level: Int) throws {
        setSyncs(false)
        var chunk = [UInt8](repeating: 0, count: c.chunkSize)
        while snapshotCount < level {
            let i = snapshotCount
            fillRandom(&chunk, &rng)
            try store.write(offset: UInt64(i % c.regionChunks) * cs, chunk)
            try store.createSnapshot(tag: UInt64(i + 1))
            snapshotCount += 1
            if snapshotCount % 10_000 == 0 { print("  setup: \(snapshotCount) snapshots"); flushOutput() }
        }
        try store.flush()
        setSyncs(true)
    }

    func setSyncs(_ on: Bool) {
        storeDevice.syncEnabled = on
        originDevice.syncEnabled = on
    }

    var syncCount: Int { storeDevice.syncs + originDevice.syncs }

    func run() throws {
        try setUp()
        for level in c.levels {
            print("level \(level):")
            try grow(to: level)
            try measureWrites(level)
            try measureCreateDelete(level)
        }
    }

    /// Writes `writes` (offset, length) through the store then flushes; the same pattern with
    /// the same number of syncs on the reference. Adds a throughput result in MB/s.
    /// `cached`: a region of the origin read into the page cache just before (the old data
    /// of copy-outs, as when a write follows reads of the same data). `rounds` > 1 runs ours
    /// and the reference alternately that many times each and keeps each side's fastest run,
    /// so that one stall of this shared disk does not decide the ratio; with `freshSnapshot`
    /// (copy-outs) a new snapshot before each run after the first makes every write of the
    /// pattern a first write after a snapshot again (those snapshots go at the level's end).
    func compare(_ name: String, level: Int, writes: [(UInt64, Int)], cached: Range<UInt64>? = nil,
                 rounds: Int = 1, freshSnapshot: Bool = false, note: String? = nil) throws {
        fillRandom(&buffer, &rng)
        var best: (seconds: Double, latencies: [Double], syncs: Int, rss: Int)?
        var referenceSeconds = Double.infinity
        for round in 0..<rounds {
            if freshSnapshot && round > 0 {
                try store.createSnapshot(tag: extraTag)
                extraTags.append(extraTag)
                extraTag += 1
            }
            // Start from a clean page cache: no writeback left over from the last phase, and
            // with --drop-caches nothing cached by it either, on both sides. (Without the drop,
            // a copy-out's old data may still be cached from an earlier phase at one level and
            // not at another, and a rewrite runs on the large folios that an earlier copy-out's
            // readahead left, which the reference never read.)
            sync()
            dropCaches(c.dropCaches)
            if let cached {
                var o = cached.lowerBound
                while o < cached.upperBound {
                    try buffer.withUnsafeMutableBytes { try store.read(offset: o, into: $0) }
                    o += UInt64(buffer.count)
                }
                fillRandom(&buffer, &rng)
            }
            resetPeakResident()
            let syncsBefore = syncCount
            var latencies: [Double] = []
            latencies.reserveCapacity(writes.count)  // as the reference does: same instrumentation
            let seconds = try timed {
                for w in writes {
                    let t = nowSeconds()
                    try buffer.withUnsafeBytes { try store.write(offset: w.0, UnsafeRawBufferPointer(rebasing: $0[0..<w.1])) }
                    latencies.append(nowSeconds() - t)
                }
                try store.flush()
            }
            let run = (seconds, latencies, syncCount - syncsBefore, peakResidentKiB())
            if best.map({ seconds < $0.seconds }) ?? true { best = run }
            sync()
            dropCaches(c.dropCaches)
            referenceSeconds = min(referenceSeconds, reference.replay(writes, syncs: run.2, data: buffer))
        }
        let b = best!
        let bytes = Double(writes.reduce(0) { $0 + $1.1 })
        let ours = bytes / b.seconds / 1e6, theirs = bytes / referenceSeconds / 1e6
        results.add(Result(curve: "write", name: name, snapshots: level, unit: "MB/s", value: ours, reference: theirs,
                           ratio: ours / theirs, stats: Stats(b.latencies), syncs: b.syncs, peakResidentKiB: b.rss, note: note))
    }

    func measureWrites(_ level: Int) throws {
        let rewrite = regionStart(1)
        if level > 0 {
            // Protect the rewrite region against the newest snapshot (not measured); the
            // reference region gets the same writes, so both start from the same page cache.
            setSyncs(false)
            var o: UInt64 = 0
            while o < regionBytes {
                try store.write(offset: rewrite + o, buffer)
                reference.write(buffer, count: buffer.count, at: rewrite + o)
                o += UInt64(buffer.count)
            }
            try store.flush()
            setSyncs(true)
        }
        let randomOffsets = (0..<c.randomWrites).map { _ in (rewrite + UInt64.random(in: 0..<(regionBytes / 4096), using: &rng) * 4096, 4096) }
        try compare("rewrite 4KiB random", level: level, writes: randomOffsets, rounds: 5, note: "fastest of five runs each")
        let sequential = stride(from: rewrite, to: rewrite + regionBytes, by: 1 << 20).map { ($0, 1 << 20) }
        try compare("rewrite 1MiB sequential", level: level, writes: sequential, rounds: 3, note: "fastest of three runs each")

        // First writes after a snapshot: every chunk written needs a copy-out. Each pattern
        // runs with the old data in the page cache (read just before) and, with --drop-caches,
        // again with it on disk only: then each copy-out also waits for a read from the disk.
        try store.createSnapshot(tag: measureTag)
        let chunksInRegion = UInt64(c.regionChunks)
        let copyOutChunks = min(c.copyOutWrites, c.regionChunks / 2)
        var picked = Set<UInt64>()
        while picked.count < 2 * copyOutChunks { picked.insert(UInt64.random(in: 0..<chunksInRegion, using: &rng)) }
        let copyOffsets = picked.sorted().shuffled(using: &rng).map { chunk in
            (regionStart(2) + chunk * cs + UInt64.random(in: 0..<(cs / 4096), using: &rng) * 4096, 4096)
        }
        let region2 = regionStart(2)..<regionStart(3), region3 = regionStart(3)..<regionStart(4)
        let fresh = "fastest of three runs each, a new snapshot before each"
        try compare("copy-out 4KiB random", level: level + 1, writes: Array(copyOffsets[..<copyOutChunks]), cached: region2,
                    rounds: 3, freshSnapshot: true, note: "old data in the page cache; \(fresh)")
        if c.dropCaches {
            try compare("copy-out 4KiB random, old data on disk", level: level + 1, writes: Array(copyOffsets[copyOutChunks...]),
                        rounds: 3, freshSnapshot: true, note: "page cache dropped before; \(fresh)")
        }
        try store.createSnapshot(tag: measureTag + 1)
        let copySequential = stride(from: region3.lowerBound, to: region3.upperBound, by: 1 << 20).map { ($0, 1 << 20) }
        try compare("copy-out 1MiB sequential", level: level + 2, writes: copySequential, cached: region3,
                    rounds: 3, freshSnapshot: true, note: "old data in the page cache; \(fresh)")

        // Reads of that snapshot: region 3 comes from the store, region 4 from the origin.
        try compareReads("snapshot read from store", level: level + 2, tag: measureTag + 1, start: regionStart(3))
        try compareReads("snapshot read from origin", level: level + 2, tag: measureTag + 1, start: regionStart(4))
        if c.dropCaches {
            try store.createSnapshot(tag: measureTag + 2)
            try compare("copy-out 1MiB sequential, old data on disk", level: level + 3, writes: copySequential,
                        rounds: 3, freshSnapshot: true, note: "page cache dropped before; \(fresh)")
            try store.deleteSnapshot(tag: measureTag + 2)
        }
        try store.deleteSnapshot(tag: measureTag)
        try store.deleteSnapshot(tag: measureTag + 1)
        for tag in extraTags { try store.deleteSnapshot(tag: tag) }
        extraTags.removeAll()
        measureTag += 3
    }

    func compareReads(_ name: String, level: Int, tag: UInt64, start: UInt64) throws {
        dropCaches(c.dropCaches)
        resetPeakResident()
        let seconds = try timed {
            var o: UInt64 = 0
            while o < regionBytes {
                try buffer.withUnsafeMutableBytes { try store.read(snapshot: tag, offset: start + o, into: $0) }
                o += UInt64(buffer.count)
            }
        }
        let rss = peakResidentKiB()
        dropCaches(c.dropCaches)
        let referenceSeconds = timed {
            var o: UInt64 = 0
            while o < regionBytes {
                reference.read(into: &buffer, count: buffer.count, at: start + o)
                o += UInt64(buffer.count)
            }
        }
        let ours = Double(regionBytes) / seconds / 1e6, theirs = Double(regionBytes) / referenceSeconds / 1e6
        results.add(Result(curve: "read", name: name, snapshots: level, unit: "MB/s", value: ours, reference: theirs,
                           ratio: ours / theirs, stats: nil, syncs: nil, peakResidentKiB: rss,
                           note: c.dropCaches ? "page cache dropped before each read" : "page cache warm"))
    }

    /// Snapshot create and delete latency, each snapshot taken after some fresh writes.
    func measureCreateDelete(_ level: Int) throws {
        var chunk = [UInt8](repeating: 0, count: 16 * c.chunkSize)
        var creates: [Double] = [], deletes: [Double] = [], freed: [UInt64] = []
        var tags: [UInt64] = []
        resetPeakResident()
        for k in 0..<c.createDeleteSamples {
            fillRandom(&chunk, &rng)
            try store.write(offset: UInt64((k * 16) % (c.regionChunks - 16)) * cs, chunk)
            let tag = measureTag + UInt64(k)
            creates.append(try timed { try store.createSnapshot(tag: tag) })
            tags.append(tag)
        }
        fillRandom(&chunk, &rng)
        try store.write(offset: 0, chunk)
        for tag in tags {
            let before = store.status.freeChunks
            deletes.append(try timed { try store.deleteSnapshot(tag: tag) })
            freed.append(store.status.freeChunks - before)
        }
        measureTag += UInt64(c.createDeleteSamples)
        let rss = peakResidentKiB()
        let createStats = Stats(creates), deleteStats = Stats(deletes)
        results.add(Result(curve: "snapshot", name: "create", snapshots: level, unit: "ms", value: createStats.median * 1000,
                           reference: nil, ratio: nil, stats: createStats, syncs: nil, peakResidentKiB: rss,
                           note: "after 16 fresh chunks written; includes the durable commit"))
        results.add(Result(curve: "snapshot", name: "delete", snapshots: level, unit: "ms", value: deleteStats.median * 1000,
                           reference: nil, ratio: nil, stats: deleteStats, syncs: nil, peakResidentKiB: rss,
                           note: "frees \(freed.min() ?? 0)...\(freed.max() ?? 0) chunks each"))
    }
}
