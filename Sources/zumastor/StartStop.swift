import ArgumentParser
import VolumeManager

/// `start` / `stop` take nothing (the whole service: every defined volume), `volume VOL` or
/// `master VOL` (the master's mounts and schedule only; the volume keeps running), or
/// `target VOL HOST` and `source VOL` (a replication relationship's periodic cycles).
struct Target: ParsableArguments {
    @Argument(help: ArgumentHelp("Nothing (every volume), 'volume VOL', 'master VOL', 'target VOL HOST' or 'source VOL'.",
                                 valueName: "volume|master|target|source VOL [HOST]"))
    var words: [String] = []

    func validate() throws {
        let ok = words.isEmpty || (words.count == 2 && ["volume", "master", "source"].contains(words[0]))
            || (words.count == 3 && words[0] == "target")
        guard ok else {
            throw ValidationError("expected nothing (every volume), 'volume VOL', 'master VOL', 'target VOL HOST' or 'source VOL', got '\(words.joined(separator: " "))'")
        }
    }

    /// Runs the verb on what the words name and prints what was done ("Started", ...).
    func run(_ done: String, volume: (VolumeManager, String) throws -> Void, master: (VolumeManager, String) throws -> Void,
             all: (VolumeManager) throws -> Void) throws {
        let m = manager()
        let starting = done == "Started"
        switch words.first {
        case "target":
            try m.setStarted(words[1], target: words[2], starting)
            print("\(done) the periodic replication of '\(words[1])' to \(words[2]).")
        case "source":
            try m.setStarted(words[1], target: nil, starting)
            print("\(done) the periodic replication of '\(words[1])' from its source.")
        case "volume":
            try volume(m, words[1])
            print("\(done) volume '\(words[1])'.")
        case "master":
            try master(m, words[1])
            print("\(done) master '\(words[1])'.")
        default:
            try all(m)
            print("\(done) \(m.definedVolumes().count) volume(s).")
        }
    }
}

struct Start: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start every defined volume (the service), one volume, or one master's mounts and schedule.",
        discussion: """
            The service also serves Prometheus metrics, at http://127.0.0.1:9339/metrics unless \
            /etc/zumastor/metrics holds another HOST:PORT (a loopback address) or 'off'.
            """)

    @OptionGroup var target: Target
    @Option(help: ArgumentHelp("Serve Prometheus metrics at http://HOST:PORT/metrics (a loopback address), for this start.",
                               valueName: "host:port"))
    var metricsListen: String?
    @Flag(help: "Do not serve metrics (a running exporter stops), for this start.") var noMetrics = false

    func validate() throws {
        if metricsListen != nil || noMetrics {
            guard target.words.isEmpty else { throw ValidationError("--metrics-listen and --no-metrics apply to the whole service (zumastor start)") }
            guard !(metricsListen != nil && noMetrics) else { throw ValidationError("give --metrics-listen or --no-metrics, not both") }
        }
        if let metricsListen {
            do { _ = try MetricsSetting(parsing: metricsListen) } catch { throw ValidationError("--metrics-listen: \(error)") }
        }
    }

    func run() throws {
        let metrics = try noMetrics ? .off : metricsListen.map { try MetricsSetting(parsing: $0) }
        try target.run("Started", volume: { try $0.startVolume($1) }, master: { try $0.startMaster($1) }, all: { m in
            try m.startAll(metrics: metrics)
            if let e = m.metricsExporter() { print("Metrics at http://\(e.address)/metrics (exporter pid \(e.pid)).") }
        })
    }
}

/// The host's metrics exporter (started by `zumastor start`).
struct MetricsExporter: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Serve the host's Prometheus metrics (started by zumastor start).", shouldDisplay: false)

    @Option(help: ArgumentHelp("Where to listen (a loopback address).", valueName: "host:port")) var listen: String

    func run() throws { try manager().runMetricsExporter(try MetricsSetting(parsing: listen)) }
}

struct Stop: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop every defined volume (the service), one volume, or one master's mounts and schedule.")

    @OptionGroup var target: Target

    func run() throws {
        try target.run("Stopped", volume: { try $0.stopVolume($1) }, master: { try $0.stopMaster($1) }, all: { try $0.stopAll() })
    }
}
