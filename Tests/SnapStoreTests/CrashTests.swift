// Crash simulation: run a workload, crash at every I/O in turn, keep/drop/tear each unsynced
// write (seeded), reopen, and require that the store opens, checks clean, and holds exactly a
// committed state: the snapshots of the operation before or after the one in flight, each
// with exactly its contents, and the origin as the model says outside the write in flight.

import Testing
import SnapStore
import SnapStoreTestKit
#if canImport(Glibc)
import Glibc
#endif

enum CrashOp: CustomStringConvertible {
    case originWrite(offset: Int, bytes: [UInt8])
    /// One group commit for every extent, as the server's batches and delta applies do.
    case originBatch([(Int, [UInt8])])
    /// A discard or NBD WRITE_ZEROES.
    case zeros(offset: Int, length: Int)
    case snapshotWrite(tag: UInt64, offset: Int, bytes: [UInt8])
    case create(UInt64)
    case delete(UInt64)
    /// The origin made equal to a snapshot again (chunk by chunk, through the write path).
    case revert(UInt64)
    /// The origin file grown or shrunk (a shrink copies out what snapshots read past its end).
    case resize(Int)
    /// A restart: a clean close, or (after the flush every operation ends with) power loss,
    /// with the copy-out log the last commits left.
    case reopen(clean: Bool)

    var description: String {
        switch self {
        case let .originWrite(at, bytes): return "origin write \(at)+\(bytes.count)"
        case let .originBatch(extents): return "origin batch \(extents.map { "\($0.0)+\($0.1.count)" })"
        case let .zeros(at, n): return "origin zeros \(at)+\(n)"
        case let .snapshotWrite(tag, at, bytes): return "snapshot \(tag) write \(at)+\(bytes.count)"
        case let .create(tag): return "create \(tag)"
        case let .delete(tag): return "delete \(tag)"
        case let .revert(tag): return "revert to \(tag)"
        case let .resize(n): return "resize origin to \(n)"
        case let .reopen(clean): return clean ? "close and reopen" : "crash and reopen"
        }
    }

    /// The origin ranges an unacknowledged operation may have written in part.
    var originRanges: [Range<Int>] {
        switch self {
        case let .originWrite(at, bytes): return [at..<(at + bytes.count)]
        case let .originBatch(extents): return extents.map { $0.0..<($0.0 + $0.1.count) }
        case let .zeros(at, n): return [at..<(at + n)]
        // Not atomic: a crash leaves any mix of reverted and unreverted chunks.
        case .revert: return [0..<(originChunksMax * chunk)]
        default: return []
        }
    }
}

struct CrashModel {
    var origin: [UInt8]
    var snapshots: [UInt64: [UInt8]] = [:]

    mutating func apply(_ op: CrashOp) {
        switch op {
        case let .originWrite(at, bytes): origin.replaceSubrange(at..<(at + bytes.count), with: bytes)
        case let .originBatch(extents): for (at, bytes) in extents { origin.replaceSubrange(at..<(at + bytes.count), with: bytes) }
        case let .zeros(at, n): origin.replaceSubrange(at..<(at + n), with: [UInt8](repeating: 0, count: n))
        case let .snapshotWrite(tag, at, bytes): snapshots[tag]!.replaceSubrange(at..<(at + bytes.count), with: bytes)
        case let .create(tag): snapshots[tag] = origin
        case let .delete(tag): snapshots[tag] = nil
        case let .revert(tag): origin = snapshots[tag]!
        case let .resize(n): origin = n < origin.count ? Array(origin.prefix(n)) : origin + [UInt8](repeating: 0, count: n - origin.count)
        case .reopen: break
        }
    }
}

private let chunk = 4096
private let originChunks = 12
/// Resizes keep the origin between 4 and this many chunks.
private let originChunksMax = 16

/// A seeded workload over a small volume: single and batched writes, zeros, snapshot writes,
/// creates, deletes (in batches of two entries, so most span several), reverts, origin resizes,
/// and restarts.
private func workload(seed: UInt64, count: Int) -> [CrashOp] {
    var rng = SeededGenerator(seed: seed)
    var ops: [CrashOp] = []
    var live: [UInt64] = []
    var next: UInt64 = 1
    // The origin's size now, and each snapshot's (a revert takes the snapshot's).
    var size = originChunks * chunk
    var sizes: [UInt64: Int] = [:]
    func range(_ max: Int, within limit: Int? = nil) -> (Int, Int) {
        let end = limit ?? size
        let at = Int.random(in: 0..<(end / 512), using: &rng) * 512
        return (at, min(end - at, Int.random(in: 1...max, using: &rng)))
    }
    for _ in 0..<count {
        let roll = Int.random(in: 0..<16, using: &rng)
        if roll < 2 || live.isEmpty && (7..<12).contains(roll) {
            let (at, n) = range(2 * chunk)
            ops.append(.originWrite(offset: at, bytes: pattern(rng.next(), n)))
        } else if roll < 4 {
            ops.append(.originBatch((0..<Int.random(in: 2...3, using: &rng)).map { _ in
                let (at, n) = range(3 * chunk)
                return (at, pattern(rng.next(), n))
            }))
        } else if roll < 5 {
            let (at, n) = range(3 * chunk)
            ops.append(.zeros(offset: at, length: n))
        } else if roll < 7 {
            ops.append(.create(next))
            live.append(next)
            sizes[next] = size
            next += 1
        } else if roll < 9 {
            let tag = live.remove(at: Int.random(in: 0..<live.count, using: &rng))
            ops.append(.delete(tag))
        } else if roll < 12 {
            let tag = live.randomElement(using: &rng)!
            let (at, n) = range(chunk, within: sizes[tag]!)
            ops.append(.snapshotWrite(tag: tag, offset: at, bytes: pattern(rng.next(), n)))
        } else if roll < 14 {
            ops.append(.reopen(clean: roll == 12))
        } else if roll < 15, let tag = live.randomElement(using: &rng) {
            ops.append(.revert(tag))
            size = sizes[tag]!
        } else if roll == 15 {
            size = Int.random(in: 8...(originChunksMax * 2), using: &rng) * 2048
            ops.append(.resize(size))
        }
        // Power loss right after copy-outs, so that reopening replays their log.
        if case .originBatch? = ops.last, Int.random(in: 0..<3, using: &rng) == 0 { ops.append(.reopen(clean: false)) }
    }
    return ops
}

/// A store on simulated devices that share one I/O clock, reopened in place by `.reopen`.
private final class CrashHarness {
    let clock = IOClock()
    let features: SimulatedDevice.Features
    let options: StoreOptions
    var storeDevice: SimulatedDevice
    var originDevice: SimulatedDevice
    var store: Store<SimulatedDevice>
    /// Reopens that found a copy-out log to replay.
    var logReplays = 0

    init(features: SimulatedDevice.Features, options: StoreOptions) throws {
        (self.features, self.options) = (features, options)
        storeDevice = SimulatedDevice(path: "store", sizeBytes: UInt64(256 * chunk), clock: clock, identity: 1, features: features)
        originDevice = SimulatedDevice(path: "origin", sizeBytes: UInt64(originChunks * chunk), clock: clock, identity: 2, features: features)
        store = try Store.initialize(store: storeDevice, origin: originDevice, chunkSizeBytes: chunk, volumeUUID: Array(0..<16), options: options)
        clock.count = 0
    }

    func run(_ op: CrashOp) throws {
        switch op {
        case let .originWrite(at, bytes): try store.write(offset: UInt64(at), bytes)
        case let .originBatch(extents): try withExtents(extents) { try store.write(originBatch: $0) }
        case let .zeros(at, n): try store.writeZeros(originOffset: UInt64(at), length: UInt64(n))
        case let .snapshotWrite(tag, at, bytes): try store.write(snapshot: tag, offset: UInt64(at), bytes)
        case let .create(tag): try store.createSnapshot(tag: tag)
        case let .delete(tag): try store.deleteSnapshot(tag: tag)
        case let .revert(tag): try store.revert(to: tag)
        case let .resize(n): try store.resizeOrigin(to: UInt64(n))
        case let .reopen(clean):
            if clean { try store.close() }
            if store.copyOutLogEntryCount > 0 { logReplays += 1 }
            storeDevice = SimulatedDevice(path: "store", image: storeDevice.durable, clock: clock, identity: 1, features: features)
            originDevice = SimulatedDevice(path: "origin", image: originDevice.durable, clock: clock, identity: 2, features: features)
            store = try Store(store: storeDevice, origin: originDevice, options: options)
        }
        // Every operation is acknowledged durable (a FLUSH after it).
        try store.flush()
    }
}

/// Workload seeds: 40 by default (about 10,000 crash points), ZUMA_CRASH_SEEDS for more,
/// ZUMA_CRASH_SEED to replay one.
private let crashSeeds: [UInt64] = {
    if let one = getenv("ZUMA_CRASH_SEED").flatMap({ UInt64(String(cString: $0)) }) { return [one] }
    let n = getenv("ZUMA_CRASH_SEEDS").flatMap { UInt64(String(cString: $0)) } ?? 40
    return (0..<max(n, 1)).map { 11 + $0 }
}()

/// EIO seeds: 12 by default, ZUMA_EIO_SEEDS for more, ZUMA_EIO_SEED to replay one.
private let eioSeeds: [UInt64] = {
    if let one = getenv("ZUMA_EIO_SEED").flatMap({ UInt64(String(cString: $0)) }) { return [one] }
    let n = getenv("ZUMA_EIO_SEEDS").flatMap { UInt64(String(cString: $0)) } ?? 12
    return (0..<max(n, 1)).map { 101 + $0 }
}()

@Suite struct CrashTests {
    /// A seed's workload, its devices (plain, sparse, or files with reflinks and kernel copies,
    /// by seed) and options, and a clean run of it, which counts its I/Os.
    private func prepare(seed: UInt64, count: Int) throws
        -> (ops: [CrashOp], features: SimulatedDevice.Features, options: StoreOptions, clean: CrashHarness) {
        let ops = workload(seed: seed, count: count)
        let features: SimulatedDevice.Features = [[], [.holes], .all][Int(seed % 3)]
        var options = StoreOptions()
        options.cacheSizeBytes = 32 * chunk
        options.clock = { 5 }
        options.selfCheck = true
        // Deletes of a few chunks span several batches (each its own commit).
        options.releaseBatchEntries = 2
        let clean = try CrashHarness(features: features, options: options)
        for op in ops { try clean.run(op) }
        return (ops, features, options, clean)
    }

    /// Crashes at every I/O of the workload for several seeds.
    @Test(arguments: crashSeeds)
    func crashAtEveryIO(seed: UInt64) throws {
        let (ops, features, options, clean) = try prepare(seed: seed, count: 40)
        let total = clean.clock.count
        var crashes = 0
        var tearRng = SeededGenerator(seed: seed &* 7919)
        for crashAt in 1...total {
            let h = try CrashHarness(features: features, options: options)
            h.clock.crashAt = crashAt
            var before = CrashModel(origin: [UInt8](repeating: 0, count: originChunks * chunk))
            var inFlight: CrashOp?
            do {
                for op in ops {
                    inFlight = op
                    try h.run(op)
                    before.apply(op)
                    inFlight = nil
                }
            } catch is SimulatedCrash {
                crashes += 1
            }
            guard let inFlight else { continue }
            let storeImage = h.storeDevice.crashImage(using: &tearRng)
            let originImage = h.originDevice.crashImage(using: &tearRng)
            let context = "seed \(seed), crash at I/O \(crashAt) of \(total), during \(inFlight)"
            guard verifyReopened(storeImage, originImage, before: before, inFlight: inFlight, context: context,
                                 features: features, options: options) else { return }
        }
        #expect(crashes == total)
        print("crash simulation seed \(seed) (\(features.isEmpty ? "plain" : features == [.holes] ? "sparse" : "reflinks, kernel copies") devices): \(total) crash points checked, \(clean.logReplays) reopens replayed a copy-out log, \(ops.filter { if case .revert = $0 { true } else { false } }.count) reverts, \(ops.filter { if case .resize = $0 { true } else { false } }.count) resizes")
    }

    /// Reopens the images a crash or an error left and requires a committed state: the store
    /// opens and checks clean, its snapshots are those before or after the operation in flight,
    /// each with exactly its contents, and the origin is as before outside what that operation
    /// may have written. False when the store does not even open (recorded).
    func verifyReopened(_ storeImage: [UInt8], _ originImage: [UInt8], before: CrashModel, inFlight: CrashOp, context: String,
                        features: SimulatedDevice.Features, options: StoreOptions) -> Bool {
        var after = before
        after.apply(inFlight)
        let reopened: Store<SimulatedDevice>
        do {
            reopened = try Store(store: SimulatedDevice(path: "store", image: storeImage, identity: 1, features: features),
                                 origin: SimulatedDevice(path: "origin", image: originImage, identity: 2, features: features), options: options)
        } catch {
            Issue.record("\(context): reopen failed: \(error)")
            return false
        }
        do {
            let report = try reopened.check()
            #expect(report.isClean, "\(context): \(report.problems.prefix(3)) leaked \(report.leakedChunks.prefix(3))")
            let tags = Set(try reopened.snapshots.map(\.tag))
            let expected = tags == Set(after.snapshots.keys) ? after : before
            #expect(tags == Set(expected.snapshots.keys), "\(context): snapshots \(tags.sorted())")
            for (tag, bytes) in expected.snapshots where tags.contains(tag) {
                let got = try reopened.read(snapshot: tag, offset: 0, length: bytes.count)
                if case let .snapshotWrite(t, at, data) = inFlight, t == tag {
                    // An unacknowledged write may be partly there: compare outside it.
                    expectSame(got[..<at], bytes[..<at], "\(context): snapshot \(tag) head")
                    expectSame(got[(at + data.count)...], bytes[(at + data.count)...], "\(context): snapshot \(tag) tail")
                } else {
                    expectSame(got[...], bytes[...], "\(context): snapshot \(tag) contents")
                }
            }
            // The origin as before the operation in flight (or, for a resize, after it when it
            // has the new size), outside what that operation may have written.
            let size = Int(reopened.status.originSizeBytes)
            let model: [UInt8]
            if size == before.origin.count {
                model = before.origin
            } else if case .resize = inFlight, size == after.origin.count {
                model = after.origin
            } else if case .revert = inFlight {
                model = [UInt8](repeating: 0, count: size)  // any mix: nothing to compare
            } else {
                Issue.record("\(context): origin of \(size) bytes, expected \(before.origin.count)")
                return true
            }
            let origin = try reopened.read(offset: 0, length: size)
            var outside = [Bool](repeating: true, count: origin.count)
            for r in inFlight.originRanges { for i in r where i < outside.count { outside[i] = false } }
            if let i = outside.indices.first(where: { outside[$0] && origin[$0] != model[$0] }) {
                Issue.record("\(context): origin byte \(i) differs outside the operation in flight")
            }
        } catch {
            Issue.record("\(context): reopened store: \(error)")
        }
        return true
    }

    /// EIO on every I/O of the workload in turn (reads, writes, syncs, punches and copies of the
    /// store and the origin): the operation reports an operating error, and the devices as the
    /// process left them (a restart) and as a power loss then leaves them both reopen at a
    /// committed state, as after a crash.
    @Test(arguments: eioSeeds)
    func errorAtEveryIO(seed: UInt64) throws {
        let (ops, features, options, clean) = try prepare(seed: seed, count: 30)
        let total = clean.clock.count
        var reported = 0
        var tearRng = SeededGenerator(seed: seed &* 104_729)
        for failAt in 1...total {
            let h = try CrashHarness(features: features, options: options)
            h.clock.failAt = failAt
            var before = CrashModel(origin: [UInt8](repeating: 0, count: originChunks * chunk))
            var inFlight: CrashOp?
            for op in ops {
                inFlight = op
                do {
                    try h.run(op)
                } catch let e as StoreError {
                    // The injected EIO itself, or what it left: a handle that says it is unusable.
                    reported += 1
                    if case .io = e {} else { #expect("\(e)".contains("unusable"), "seed \(seed), EIO at I/O \(failAt): \(e)") }
                    break
                }
                before.apply(op)
                inFlight = nil
            }
            // An error some layer absorbed (a fallback): the whole workload then ran.
            guard let inFlight else { continue }
            let context = "seed \(seed), EIO at I/O \(failAt) of \(total), during \(inFlight)"
            guard verifyReopened(h.storeDevice.current, h.originDevice.current, before: before, inFlight: inFlight,
                                 context: context + ", restarted", features: features, options: options) else { return }
            guard verifyReopened(h.storeDevice.crashImage(using: &tearRng), h.originDevice.crashImage(using: &tearRng), before: before,
                                 inFlight: inFlight, context: context + ", then power lost", features: features, options: options) else { return }
        }
        print("EIO simulation seed \(seed): \(total) I/Os failed in turn, \(reported) reported as errors")
    }

    /// A crash anywhere in initialize leaves either no store or an empty, clean one.
    @Test func crashDuringInitialize() throws {
        var rng = SeededGenerator(seed: 3)
        for crashAt in 1...40 {
            let clock = IOClock()
            clock.crashAt = crashAt
            let s = SimulatedDevice(path: "store", sizeBytes: UInt64(256 * chunk), clock: clock, identity: 1)
            let o = SimulatedDevice(path: "origin", sizeBytes: UInt64(originChunks * chunk), clock: clock, identity: 2)
            do {
                _ = try Store.initialize(store: s, origin: o, chunkSizeBytes: chunk)
            } catch is SimulatedCrash {}
            let image = s.crashImage(using: &rng)
            do {
                let store = try Store(store: SimulatedDevice(path: "store", image: image, identity: 1), origin: o)
                #expect(try store.check().isClean)
                #expect(try store.snapshots.isEmpty)
            } catch let e as StoreError {
                guard case .notAStore = e else { Issue.record("crash at \(crashAt): \(e)"); continue }
            }
        }
    }
}

