// Random operations against a trivial in-memory model: after every step the origin and every
// live snapshot are compared byte for byte. Seeds are printed on failure and replayable.

import Testing
import SnapStore
import SnapStoreTestKit
#if canImport(Glibc)
import Glibc
#endif

/// The trivial model: the origin's bytes and each snapshot's bytes.
struct Model {
    var origin: [UInt8]
    var snapshots: [UInt64: [UInt8]] = [:]
    var order: [UInt64] = []
}

final class ModelRun {
    let chunk = 4096
    var rng: SeededGenerator
    let seed: UInt64
    var model: Model
    var store: Store<SimulatedDevice>
    var storeDevice: SimulatedDevice
    var originDevice: SimulatedDevice
    var options = StoreOptions()
    var nextTag: UInt64 = 1
    var log: [String] = []

    init(seed: UInt64, originChunks: Int = 24, storeChunks: Int = 4096) throws {
        self.seed = seed
        rng = SeededGenerator(seed: seed)
        options.cacheSizeBytes = 64 * 4096  // small: exercises eviction
        options.dirtyBlocksMax = 64
        options.clock = { 1 }
        storeDevice = SimulatedDevice(path: "store", sizeBytes: UInt64(storeChunks * chunk), identity: 1)
        originDevice = SimulatedDevice(path: "origin", sizeBytes: UInt64(originChunks * chunk), identity: 2)
        store = try Store.initialize(store: storeDevice, origin: originDevice, chunkSizeBytes: chunk,
                                     volumeUUID: Array(0..<16), options: options)
        model = Model(origin: [UInt8](repeating: 0, count: originChunks * chunk))
    }

    func random(_ range: Range<Int>) -> Int { Int.random(in: range, using: &rng) }

    /// A write range biased to chunk edges, sometimes spanning several chunks.
    func randomRange(size: Int) -> (Int, Int) {
        let start = random(0..<(size / 512)) * 512 + (random(0..<4) == 0 ? random(0..<512) : 0)
        let length = min(size - start, [1, 512, 4096, 3 * 4096 + 100, random(1..<9000)][random(0..<5)])
        return (start, max(length, 1))
    }

    func originWrite() throws {
        let (at, n) = randomRange(size: model.origin.count)
        let bytes = pattern(rng.next(), n)
        log.append("origin write \(at)+\(n)")
        try store.write(offset: UInt64(at), bytes)
        model.origin.replaceSubrange(at..<(at + n), with: bytes)
    }

    func snapshotWrite() throws {
        guard let tag = model.order.randomElement(using: &rng) else { return }
        let size = model.snapshots[tag]!.count
        let (at, n) = randomRange(size: size)
        let bytes = pattern(rng.next(), n)
        log.append("snapshot \(tag) write \(at)+\(n)")
        try store.write(snapshot: tag, offset: UInt64(at), bytes)
        model.snapshots[tag]!.replaceSubrange(at..<(at + n), with: bytes)
    }

    func create() throws {
        let tag = nextTag
        nextTag += 1
        log.append("create \(tag)")
        try store.createSnapshot(tag: tag)
        model.snapshots[tag] = model.origin
        model.order.append(tag)
    }

    func delete(which: Int? = nil) throws {
        guard !model.order.isEmpty else { return }
        let i = which ?? random(0..<model.order.count)
        let tag = model.order.remove(at: min(i, model.order.count - 1))
        log.append("delete \(tag)")
        try store.deleteSnapshot(tag: tag)
        model.snapshots[tag] = nil
    }

    func revert() throws {
        guard let tag = model.order.randomElement(using: &rng) else { return }
        log.append("revert to \(tag)")
        try store.revert(to: tag)
        model.origin = model.snapshots[tag]!
    }

    func resize() throws {
        let chunks = model.origin.count / chunk
        let newChunks = max(4, chunks + random(-6..<7))
        let newSize = newChunks * chunk - (random(0..<3) == 0 ? 512 * random(1..<8) : 0)
        log.append("resize origin \(model.origin.count) -> \(newSize)")
        try store.resizeOrigin(to: UInt64(newSize))
        if newSize < model.origin.count {
            model.origin.removeSubrange(newSize...)
        } else {
            model.origin.append(contentsOf: [UInt8](repeating: 0, count: newSize - model.origin.count))
        }
    }

    func restart() throws {
        log.append("restart")
        try store.flush()
        // Power loss right after a flush: only durable bytes survive.
        storeDevice = SimulatedDevice(path: "store", image: storeDevice.durable, identity: 1)
        originDevice = SimulatedDevice(path: "origin", image: originDevice.durable, identity: 2)
        store = try Store(store: storeDevice, origin: originDevice, options: options)
    }

    func verify() throws {
        let o = try store.read(offset: 0, length: model.origin.count)
        let originSame = expectSame(o[...], model.origin[...], "seed \(seed): origin differs after \(log.suffix(3))")
        if !originSame { throw ModelFailure(seed: seed, log: log) }
        #expect(try store.snapshots.map(\.tag) == model.order)
        for tag in model.order {
            let expected = model.snapshots[tag]!
            let got = try store.read(snapshot: tag, offset: 0, length: expected.count)
            if got != expected {
                let firstDiff = zip(got, expected).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? -1
                Issue.record("seed \(seed): snapshot \(tag) differs at byte \(firstDiff) (chunk \(firstDiff / chunk)) after \(log.suffix(6))")
                throw ModelFailure(seed: seed, log: log)
            }
        }
    }

    /// Every chunk whose bytes differ must be listed; a snapshot against itself lists nothing.
    func verifyChangelists() throws {
        let sides: [(StoreSide, [UInt8])] = [(.origin, model.origin)] + model.order.map { (.snapshot($0), model.snapshots[$0]!) }
        for _ in 0..<3 {
            let (a, x) = sides.randomElement(using: &rng)!
            let (b, y) = sides.randomElement(using: &rng)!
            let listed = Set(try store.changedChunks(from: a, to: b))
            if a == b { #expect(listed.isEmpty); continue }
            let chunks = (max(x.count, y.count) + chunk - 1) / chunk
            for c in 0..<chunks {
                let lo = c * chunk
                let px = lo < x.count ? Array(x[lo..<min(lo + chunk, x.count)]) : []
                let py = lo < y.count ? Array(y[lo..<min(lo + chunk, y.count)]) : []
                if px != py && !listed.contains(UInt64(c)) {
                    Issue.record("seed \(seed): chunk \(c) differs between \(a) and \(b) but is not in the changelist")
                    throw ModelFailure(seed: seed, log: log)
                }
            }
        }
    }

    func checkClean() throws {
        let report = try store.check()
        #expect(report.isClean, "seed \(seed): check: \(report.problems.prefix(5)) leaked \(report.leakedChunks.prefix(5)) after \(log.suffix(4))")
        if !report.isClean { throw ModelFailure(seed: seed, log: log) }
    }

    func step() throws {
        switch random(0..<100) {
        case 0..<40: try originWrite()
        case 40..<52: try snapshotWrite()
        case 52..<66: if model.order.count < 12 { try create() } else { try delete() }
        case 66..<78: try delete()
        case 78..<83: try revert()
        case 83..<89: try resize()
        case 89..<95: try restart()
        default: try verifyChangelists()
        }
    }
}

struct ModelFailure: Error, CustomStringConvertible {
    let seed: UInt64
    let log: [String]
    var description: String { "model run with seed \(seed) failed; last operations: \(log.suffix(10))" }
}

/// Seeds and steps of the random model runs: 12 x 1000 by default; ZUMA_MODEL_SEEDS and
/// ZUMA_MODEL_STEPS scale them up, ZUMA_MODEL_SEED replays one seed.
private let modelSeeds: [UInt64] = {
    if let one = getenv("ZUMA_MODEL_SEED").flatMap({ UInt64(String(cString: $0)) }) { return [one] }
    let n = getenv("ZUMA_MODEL_SEEDS").flatMap { UInt64(String(cString: $0)) } ?? 12
    return Array(1...max(n, 1))
}()
private let modelSteps = getenv("ZUMA_MODEL_STEPS").flatMap { Int(String(cString: $0)) } ?? 1000

@Suite struct ModelTests {
    @Test(arguments: modelSeeds)
    func randomOperations(seed: UInt64) throws {
        let run = try ModelRun(seed: seed)
        for i in 0..<modelSteps {
            try run.step()
            try run.verify()
            if i % 50 == 49 { try run.checkClean() }
        }
        try run.checkClean()
    }

    /// Every interleaving of origin and snapshot writes on shared and unshared chunks, deletes
    /// of the oldest, newest and a middle snapshot, with a restart in between.
    @Test func fixedInterleavings() throws {
        let run = try ModelRun(seed: 99, originChunks: 8)
        func originWrite(_ c: Int) throws {
            let bytes = pattern(run.rng.next(), 4096)
            try run.store.write(offset: UInt64(c * 4096), bytes)
            run.model.origin.replaceSubrange(c * 4096..<(c + 1) * 4096, with: bytes)
            try run.verify()
        }
        func snapWrite(_ tag: UInt64, _ c: Int) throws {
            let bytes = pattern(run.rng.next(), 4096)
            try run.store.write(snapshot: tag, offset: UInt64(c * 4096), bytes)
            run.model.snapshots[tag]!.replaceSubrange(c * 4096..<(c + 1) * 4096, with: bytes)
            try run.verify()
        }
        for c in 0..<8 { try originWrite(c) }
        for deleteWhich in [0, 1, 2] {  // oldest, middle, newest
            for restartBetween in [false, true] {
                try run.create(); try run.create(); try run.create()
                let tags = run.model.order.suffix(3)
                let (a, b, cTag) = (tags[tags.startIndex], tags[tags.startIndex + 1], tags[tags.startIndex + 2])
                // chunk 0: origin then snapshot; chunk 1: snapshot then origin; chunk 2: only
                // origin; chunk 3: only snapshot; chunk 4: both snapshots, shared chunk.
                try originWrite(0); try snapWrite(a, 0)
                try snapWrite(b, 1); try originWrite(1)
                try originWrite(2)
                try snapWrite(cTag, 3)
                try snapWrite(a, 4); try snapWrite(cTag, 4); try originWrite(4)
                if restartBetween { try run.restart(); try run.verify() }
                let index = run.model.order.count - 3 + deleteWhich
                try run.delete(which: index)
                try run.verify()
                try run.checkClean()
                try originWrite(0); try originWrite(4)
                while !run.model.order.isEmpty { try run.delete(which: 0); try run.verify() }
                try run.checkClean()
            }
        }
    }
}
