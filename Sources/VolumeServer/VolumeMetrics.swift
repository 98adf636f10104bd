// What a volume's server counts while it serves (MetricCatalog.server): recorded through
// swift-metrics into the server's own registry, rendered for a scrape by its HTTP endpoint
// (`--metrics-listen`) or its control socket (`metrics`, which the host's exporter asks).
// Recording is a few atomic increments per request; the store's gauges are read at a scrape.

import CoreMetrics
import Foundation
import Prometheus
import SnapStore

public final class VolumeMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    /// The figures of one device kind: the origin, or all snapshots together.
    struct DeviceIO: Sendable {
        let reads: CoreMetrics.Counter
        let readBytes: CoreMetrics.Counter
        let writes: CoreMetrics.Counter
        let writeBytes: CoreMetrics.Counter
        let writeDuration: CoreMetrics.Timer

        init(_ volume: String, _ device: String, _ f: DescribedMetricsFactory) {
            let d = [("volume", volume), ("device", device)]
            reads = Counter(label: "zumastor_reads_total", dimensions: d, factory: f)
            readBytes = Counter(label: "zumastor_read_bytes_total", dimensions: d, factory: f)
            writes = Counter(label: "zumastor_writes_total", dimensions: d, factory: f)
            writeBytes = Counter(label: "zumastor_write_bytes_total", dimensions: d, factory: f)
            writeDuration = Timer(label: "zumastor_write_duration_seconds", dimensions: d, factory: f)
        }
    }

    public enum Operation: String, Sendable { case read, write, flush }

    private let origin: DeviceIO
    private let snapshot: DeviceIO
    private let errors: [Operation: CoreMetrics.Counter]
    private let flushes: CoreMetrics.Counter
    private let checkpoints: CoreMetrics.Counter
    private let logCommits: CoreMetrics.Counter
    private let commitDuration: CoreMetrics.Timer
    private let copyOuts: CoreMetrics.Counter
    private let deletedForSpace: CoreMetrics.Counter
    private let squashed: CoreMetrics.Counter
    private let gauges: [String: CoreMetrics.Gauge]

    public init(volume: String) {
        registry = PrometheusCollectorRegistry()
        let f = DescribedMetricsFactory(registry: registry, catalog: MetricCatalog.server)
        let v = [("volume", volume)]
        origin = DeviceIO(volume, "origin", f)
        snapshot = DeviceIO(volume, "snapshot", f)
        var errors: [Operation: CoreMetrics.Counter] = [:]
        for op in [Operation.read, .write, .flush] {
            errors[op] = Counter(label: "zumastor_io_errors_total", dimensions: v + [("operation", op.rawValue)], factory: f)
        }
        self.errors = errors
        flushes = Counter(label: "zumastor_flushes_total", dimensions: v, factory: f)
        checkpoints = Counter(label: "zumastor_commits_total", dimensions: v + [("kind", "checkpoint")], factory: f)
        logCommits = Counter(label: "zumastor_commits_total", dimensions: v + [("kind", "log")], factory: f)
        commitDuration = Timer(label: "zumastor_commit_duration_seconds", dimensions: v, factory: f)
        copyOuts = Counter(label: "zumastor_copyout_chunks_total", dimensions: v, factory: f)
        deletedForSpace = Counter(label: "zumastor_store_full_events_total", dimensions: v + [("action", "deleted")], factory: f)
        squashed = Counter(label: "zumastor_store_full_events_total", dimensions: v + [("action", "squashed")], factory: f)
        var gauges: [String: CoreMetrics.Gauge] = [:]
        for name in VolumeMetrics.storeGauges {
            gauges[name] = Gauge(label: name, dimensions: v, factory: f)
        }
        self.gauges = gauges
        gauges["zumastor_server_start_time_seconds"]!.record(Double(Store<FileDevice>.wallClockNanoseconds()) / 1e9)
    }

    private static let storeGauges = [
        "zumastor_origin_size_bytes", "zumastor_chunk_size_bytes", "zumastor_store_size_bytes", "zumastor_store_used_bytes",
        "zumastor_store_used_percent", "zumastor_store_snapshot_chunks", "zumastor_store_metadata_chunks",
        "zumastor_snapshots", "zumastor_snapshots_squashed", "zumastor_server_start_time_seconds",
    ]

    private func io(_ tag: UInt64?) -> DeviceIO { tag == nil ? origin : snapshot }

    // MARK: Recording

    func read(_ tag: UInt64?, bytes: Int) {
        let d = io(tag)
        d.reads.increment()
        d.readBytes.increment(by: Int64(bytes))
    }

    /// A write (or zeroing) of `bytes` that arrived at `started` (Store.monotonicNanoseconds).
    func wrote(_ tag: UInt64?, bytes: UInt64, started: UInt64) {
        let d = io(tag)
        d.writes.increment()
        d.writeBytes.increment(by: Int64(clamping: bytes))
        d.writeDuration.recordNanoseconds(Int64(clamping: Store<FileDevice>.monotonicNanoseconds() - started))
    }

    func flushed() { flushes.increment() }

    func failed(_ operation: Operation) { errors[operation]!.increment() }

    /// The store's copy-outs and commits (StoreOptions.onActivity).
    public func record(_ activity: StoreActivity) {
        switch activity {
        case let .copiedOut(chunks): copyOuts.increment(by: Int64(chunks))
        case let .committed(checkpoint, nanoseconds):
            (checkpoint ? checkpoints : logCommits).increment()
            commitDuration.recordNanoseconds(Int64(clamping: nanoseconds))
        }
    }

    /// The store's events that count as store-full events.
    public func record(_ event: StoreEvent) {
        switch event {
        case .snapshotDeletedForSpace: deletedForSpace.increment()
        case .snapshotSquashed: squashed.increment()
        case .fillWarning, .incompleteCommitSkipped, .reopenedAfterNoSpace: break
        }
    }

    // MARK: A scrape

    /// The exposition text, the store's gauges read from `status` first.
    public func render(_ status: StoreStatus?) -> String {
        if let s = status {
            let chunk = Double(s.chunkSizeBytes)
            let values: [String: Double] = [
                "zumastor_origin_size_bytes": Double(s.originSizeBytes),
                "zumastor_chunk_size_bytes": chunk,
                "zumastor_store_size_bytes": Double(s.storeChunks) * chunk,
                "zumastor_store_used_bytes": Double(s.usedChunks) * chunk,
                "zumastor_store_used_percent": Double(s.usedChunks) * 100 / Double(max(s.storeChunks, 1)),
                "zumastor_store_snapshot_chunks": Double(s.exceptionCount + s.privateChunkCount),
                "zumastor_store_metadata_chunks": Double(s.metadataChunks),
                "zumastor_snapshots": Double(s.snapshotCount),
                "zumastor_snapshots_squashed": Double(s.squashedCount),
            ]
            for (name, value) in values { gauges[name]!.record(value) }
        }
        return registry.emitToString()
    }
}
