// The metrics' catalog against docs/OPERATIONS.md, the merge of several registries' texts
// into one exposition, and the reasons replication failures are counted by. The endpoint
// and the figures of real work are exercised by Tests/cli/metrics-e2e.sh.

import CoreMetrics
import Foundation
import Prometheus
import Replication
import Testing
import Transport
@testable import VolumeManager
import VolumeServer

@Suite struct MetricsTests {
    @Test func everyMetricIsDocumented() throws {
        let docs = URL(fileURLWithPath: "\(#filePath)").deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/OPERATIONS.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        let catalog = Set(MetricCatalog.all.map(\.name))
        #expect(catalog.count == MetricCatalog.all.count, "a name twice in the catalog")
        for name in catalog { #expect(text.contains("| `\(name)` |"), "docs/OPERATIONS.md lacks \(name)") }
        // And nothing documented that is not served.
        let documented = text.split(separator: "\n").filter { $0.hasPrefix("| `zumastor_") }
            .map { String($0.dropFirst(3).prefix(while: { $0 != "`" })) }
        #expect(Set(documented) == catalog)
        for d in MetricCatalog.all { #expect(d.name.hasPrefix("zumastor_") && !d.help.isEmpty) }
    }

    @Test func mergeGroupsFamiliesAcrossTexts() {
        func text(_ volume: String, writes: Int64) -> String {
            let f = DescribedMetricsFactory(catalog: MetricCatalog.server)
            Counter(label: "zumastor_writes_total", dimensions: [("volume", volume), ("device", "origin")], factory: f).increment(by: writes)
            Gauge(label: "zumastor_snapshots", dimensions: [("volume", volume)], factory: f).record(3)
            Timer(label: "zumastor_commit_duration_seconds", dimensions: [("volume", volume)], factory: f).recordMilliseconds(2)
            return f.registry.emitToString()
        }
        let merged = ExpositionMerge.merge([text("a", writes: 5), text("b", writes: 7)])
        let lines = merged.split(separator: "\n")
        #expect(lines.filter { $0 == "# TYPE zumastor_writes_total counter" }.count == 1)
        #expect(lines.filter { $0.hasPrefix("# HELP zumastor_writes_total ") }.count == 1)
        #expect(lines.filter { $0.hasPrefix("# TYPE ") }.count == 3)
        // Each family's lines follow its TYPE line, before the next family begins.
        var family = ""
        var seen: Set<String> = []
        for line in lines {
            if line.hasPrefix("# TYPE ") {
                family = String(line.split(separator: " ")[2])
                #expect(!seen.contains(family))
                seen.insert(family)
            } else if !line.hasPrefix("#") {
                #expect(line.hasPrefix(family))
            }
        }
        #expect(lines.contains(#"zumastor_writes_total{volume="a",device="origin"} 5"#))
        #expect(lines.contains(#"zumastor_writes_total{volume="b",device="origin"} 7"#))
        #expect(lines.filter { $0.hasPrefix("zumastor_commit_duration_seconds_count") }.count == 2)
    }

    @Test func failureReasons() {
        #expect(LinkState.failureReason(TransportError.unreachable("gone")) == "network")
        #expect(LinkState.failureReason(TransportError.refusedPeer(address: "h", fingerprint: nil)) == "peer_key")
        #expect(LinkState.failureReason(LinkError.refused("no")) == "refused")
        #expect(LinkState.failureReason(LinkError.malformed("x")) == "protocol")
        #expect(LinkState.failureReason(ZumastorError.failed("x")) == "local")
        var s = LinkState()
        s.noteFailure(TransportError.unreachable("gone"))
        s.noteFailure(TransportError.unreachable("gone again"))
        s.noteFailure(LinkError.refused("no"))
        s.count(bytes: 10)
        s.count(bytes: 5)
        #expect(s.failures == ["network": 2, "refused": 1])
        #expect(s.lastError == "no")
        #expect(s.bytesTotal == 15)
    }

    @Test func settings() throws {
        #expect(try MetricsSetting(parsing: "127.0.0.1:9339") == .standard)
        #expect(try MetricsSetting(parsing: "[::1]:9400") == .listen(host: "::1", port: 9400))
        #expect(try MetricsSetting(parsing: "off") == .off)
        #expect(MetricsSetting.listen(host: "::1", port: 9400).description == "[::1]:9400")
        for bad in ["0.0.0.0:9339", "192.0.2.1:9339", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "example.com:9339", ""] {
            #expect(throws: ZumastorError.self) { try MetricsSetting(parsing: bad) }
        }
    }
}
