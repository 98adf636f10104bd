// The host's metrics exporter: one `zumastor metrics` process, started by `zumastor start`
// and stopped by `zumastor stop`, serving http://127.0.0.1:9339/metrics (or the address of
// /etc/zumastor/metrics, or --metrics-listen). A scrape asks every running volume server for
// its figures (control request `metrics`) and adds what zumastor's own state says: whether
// each volume is up, its snapshots by kind and their age, and each replication relationship
// (MetricCatalog.manager). Out of the data path: a volume serves whether or not it runs.

import CoreMetrics
import Foundation
import Logging
import NIOPosix
import Prometheus
import Transport
import VolumeServer

/// Where the exporter listens, or that it is off.
public enum MetricsSetting: Equatable, Sendable {
    case off
    case listen(host: String, port: Int)

    /// `HOST:PORT` or `off`; the host a loopback address, the port given.
    public init(parsing text: String) throws {
        if text == "off" {
            self = .off
            return
        }
        // Transport's parser (IPv6 in brackets); without a port it takes 0, which it refuses.
        guard let e = try? Endpoint(parsing: text, defaultPort: 0) else {
            throw ZumastorError.invalid("metrics address '\(text)' is not HOST:PORT (or 'off')")
        }
        do { try MetricsEndpoint.checkLoopback(e.host) } catch { throw ZumastorError.invalid("\(error)") }
        self = .listen(host: e.host, port: e.port)
    }

    public var description: String {
        switch self {
        case .off: return "off"
        case let .listen(host, port): return Endpoint(host: host, port: port).description
        }
    }

    public static let standard = MetricsSetting.listen(host: "127.0.0.1", port: MetricsEndpoint.defaultPort)
}

extension ZumastorPaths {
    /// The exporter: its pid file (locked while it runs; the pid, then the address), its log,
    /// and the administrator's setting (one line: HOST:PORT or off).
    public var metricsPIDFile: String { run + "/metrics.pid" }
    public var metricsLog: String { log + "/metrics.log" }
    public var metricsFile: String { etc + "/metrics" }
}

extension VolumeManager {
    /// The running exporter's pid and address.
    public func metricsExporter() -> (pid: pid_t, address: String)? {
        guard let pid = lockedPID(paths.metricsPIDFile) else { return nil }
        let lines = ((try? String(contentsOfFile: paths.metricsPIDFile, encoding: .utf8)) ?? "").split(separator: "\n")
        return (pid, lines.count > 1 ? String(lines[1]) : "")
    }

    /// The setting of /etc/zumastor/metrics (blank lines and # comments aside), else the default.
    public func configuredMetrics() throws -> MetricsSetting {
        guard let text = try? String(contentsOfFile: paths.metricsFile, encoding: .utf8) else { return .standard }
        let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard let line = lines.first else { return .standard }
        do { return try MetricsSetting(parsing: line) } catch { throw ZumastorError.config("\(paths.metricsFile): \(error)") }
    }

    /// Brings the exporter to `setting`: started, restarted on another address, or stopped.
    public func applyMetrics(_ setting: MetricsSetting) throws {
        let running = metricsExporter()
        if case .listen = setting, running?.address == setting.description { return }
        try stopMetricsExporter()
        guard case .listen = setting else { return }
        if try startService(["metrics", "--listen", setting.description], what: "metrics exporter", running: { metricsExporter() != nil }) { return }
        let last = ((try? String(contentsOfFile: paths.metricsLog, encoding: .utf8)) ?? "").split(separator: "\n").last.map(String.init)
        throw ZumastorError.failed("the metrics exporter did not start on \(setting.description)\(last.map { ": \($0)" } ?? "") (see \(paths.metricsLog))")
    }

    public func stopMetricsExporter() throws {
        guard let (pid, _) = metricsExporter() else { return }
        try stopService(pid, what: "metrics exporter", seconds: 10) { metricsExporter() != nil }
    }

    /// The exporter's life (`zumastor metrics --listen HOST:PORT`): serves until SIGTERM or SIGINT.
    public func runMetricsExporter(_ setting: MetricsSetting) throws {
        guard case let .listen(host, port) = setting else { return }
        let service = try ServiceProcess(name: "metrics", what: "metrics exporter", logPath: paths.metricsLog, pidFile: paths.metricsPIDFile)
        defer { service.release() }
        let log = service.log
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let endpoint: MetricsEndpoint
        do {
            endpoint = try MetricsEndpoint(host: host, port: port, group: group, logger: log) { [self] in renderMetrics() }
        } catch {
            log.error("cannot start: \(error)")
            throw error
        }
        service.announce([setting.description])
        log.info("metrics exporter started: http://\(endpoint.address)/metrics")
        while true {
            if let signal = service.nextSignal(), signal == SIGTERM || signal == SIGINT { break }
        }
        log.info("metrics exporter stops")
        endpoint.close()
    }

    /// One scrape: every volume server's figures and zumastor's own, merged by family.
    public func renderMetrics(now: Int = Int(time(nil))) -> String {
        let registry = PrometheusCollectorRegistry()
        let f = DescribedMetricsFactory(registry: registry, catalog: MetricCatalog.manager)
        var texts: [String] = []
        for name in definedVolumes() {
            guard let c = try? config(name) else { continue }
            let v = [("volume", name)]
            var up = false
            if let client = server(name) {
                if let text = try? client.metricsText() { texts.append(text) }
                if let snaps = try? (c.source != nil ? replicaSnapshots(c, client) : snapshots(client)) {
                    up = true
                    recordSnapshots(c, snaps, now: now, dimensions: v, factory: f)
                }
            }
            Gauge(label: "zumastor_volume_up", dimensions: v, factory: f).record(up ? 1 : 0)
            for t in c.targets {
                recordLink(LinkState.load(paths.targetState(name, t)), now: now, factory: f,
                           dimensions: v + [("peer", t.endpoint.description), ("direction", "target")])
            }
            if let s = c.source {
                recordLink(LinkState.load(paths.sourceState(name)), now: now, factory: f,
                           dimensions: v + [("peer", s.endpoint.description), ("direction", "source")])
            }
        }
        texts.append(registry.emitToString())
        return ExpositionMerge.merge(texts)
    }

    /// Counts by kind (scheduled kinds with none too, so that a missing kind reads 0) and the
    /// newest of each; a snapshot zumastor took without a kind is `manual`.
    private func recordSnapshots(_ c: VolumeConfig, _ snaps: [VolumeSnapshot], now: Int, dimensions v: [(String, String)],
                                 factory f: DescribedMetricsFactory) {
        var count: [String: Int] = [:], newest: [String: UInt64] = [:]
        for e in c.schedule { count[e.kind] = 0 }
        for s in snaps where s.label != nil {
            for kind in s.kinds.isEmpty ? ["manual"] : s.kinds {
                count[kind, default: 0] += 1
                newest[kind] = max(newest[kind] ?? 0, s.info.createdNanoseconds)
            }
        }
        for (kind, n) in count {
            let d = v + [("kind", kind)]
            Gauge(label: "zumastor_snapshots_by_kind", dimensions: d, factory: f).record(n)
            guard let created = newest[kind] else { continue }
            let seconds = Double(created) / 1e9
            Gauge(label: "zumastor_snapshot_newest_timestamp_seconds", dimensions: d, factory: f).record(seconds)
            Gauge(label: "zumastor_snapshot_newest_age_seconds", dimensions: d, factory: f).record(max(0, Double(now) - seconds))
        }
    }

    private func recordLink(_ s: LinkState, now: Int, factory f: DescribedMetricsFactory, dimensions d: [(String, String)]) {
        if let t = s.lastSuccess {
            Gauge(label: "zumastor_replication_last_success_timestamp_seconds", dimensions: d, factory: f).record(t)
        }
        if let created = s.lastSnapshotCreatedNanoseconds {
            Gauge(label: "zumastor_replication_lag_seconds", dimensions: d, factory: f).record(max(0, Double(now) - Double(created) / 1e9))
        }
        Counter(label: "zumastor_replication_bytes_total", dimensions: d, factory: f).increment(by: Int64(clamping: s.bytesTotal ?? 0))
        for (reason, n) in (s.failures ?? [:]).sorted(by: { $0.key < $1.key }) {
            Counter(label: "zumastor_replication_failures_total", dimensions: d + [("reason", reason)], factory: f).increment(by: Int64(clamping: n))
        }
        // A transfer whose process is gone is not running (its state is rewritten by the next cycle).
        let p = s.progress.flatMap { p in p.pid.map { system.signal($0, 0) } ?? true ? p : nil }
        Gauge(label: "zumastor_replication_transfer_running", dimensions: d, factory: f).record(p == nil ? 0 : 1)
        Gauge(label: "zumastor_replication_transfer_chunks_done", dimensions: d, factory: f).record(Int64(clamping: p?.chunksDone ?? 0))
        Gauge(label: "zumastor_replication_transfer_chunks_total", dimensions: d, factory: f).record(Int64(clamping: p?.chunksTotal ?? 0))
        Gauge(label: "zumastor_replication_transfer_bytes", dimensions: d, factory: f).record(Int64(clamping: p?.bytes ?? 0))
    }
}
