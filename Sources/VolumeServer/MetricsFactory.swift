// The bridge from swift-metrics (what the code records: Counter, Timer, Gauge) to a
// swift-prometheus registry (what the endpoint renders). Unlike PrometheusMetricsFactory it
// gives every metric the HELP line and histogram buckets of its entry in `MetricCatalog`,
// so that a sysadmin reading /metrics sees what each figure means.

import CoreMetrics
import Prometheus

/// A metric zumastor exports: its name, its meaning, and for a histogram its buckets.
public struct MetricDescription: Sendable {
    public let name: String
    public let help: String
    public let buckets: [Duration]?

    public init(_ name: String, _ help: String, buckets: [Duration]? = nil) {
        (self.name, self.help, self.buckets) = (name, help, buckets)
    }
}

/// Creates swift-metrics handlers in one registry, described by a catalog. A label the
/// catalog lacks is a programming error (every exported metric is documented).
public struct DescribedMetricsFactory: MetricsFactory, Sendable {
    public let registry: PrometheusCollectorRegistry
    private let catalog: [String: MetricDescription]

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), catalog: [MetricDescription]) {
        self.registry = registry
        self.catalog = Dictionary(catalog.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    private func describe(_ label: String) -> MetricDescription {
        guard let d = catalog[label] else { preconditionFailure("metric \(label) is not in the catalog") }
        return d
    }

    private func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: describe(label).help)
    }

    public func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    public func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(descriptor: descriptor(label), labels: dimensions,
                                       buckets: describe(label).buckets ?? MetricCatalog.latencyBuckets)
    }

    public func destroyCounter(_ handler: any CounterHandler) {
        if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) }
    }

    public func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) }
    }

    public func destroyRecorder(_ handler: any RecorderHandler) {
        if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
    }

    public func destroyMeter(_ handler: any MeterHandler) {
        if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
    }

    public func destroyTimer(_ handler: any TimerHandler) {
        if let h = handler as? DurationHistogram { registry.unregisterDurationHistogram(h) }
    }
}
