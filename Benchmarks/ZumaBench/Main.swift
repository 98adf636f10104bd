// zuma-bench: the benchmark curves of docs/BENCHMARKS.md. Prints a line per figure and
// writes all of them as JSON. `--smoke` runs tiny sizes (used by the test suite so the
// benchmarks cannot rot; no timing is asserted anywhere).

import ArgumentParser
import Foundation
import SnapStore

@main
struct ZumaBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "zuma-bench",
        abstract: "Measure SnapStore against plain-file references as snapshots pile up.")

    @Option(help: "Scratch directory on the disk to measure (files are created and removed).")
    var directory = "/var/tmp/zuma-bench"
    @Option(help: "Snapshot counts, comma separated.")
    var levels = "0,1,64,1000,10000,100000"
    @Option(help: "Changed-chunk counts for the changelist curve, comma separated.")
    var changelistCounts = "1,10,100,1000,10000,100000,1000000"
    @Option(help: "Write the results here as JSON.")
    var output: String?
    @Flag(help: "Tiny sizes: checks that every benchmark runs.")
    var smoke = false
    @Flag(help: "Skip the write/read/snapshot curves.")
    var skipCurves = false
    @Flag(help: "Skip the changelist curve.")
    var skipChangelist = false
    @Flag(help: "Drop the page cache before each read measurement (root).")
    var dropCaches = false
    @Option(help: "Node cache of the stores measured, in MiB.")
    var cacheMib = 32

    func validate() throws {
        guard cacheMib >= 1 else { throw ValidationError("--cache-mib must be at least 1") }
    }

    func run() throws {
        let results = Results()
        var curves = CurveConfig(directory: directory)
        var changelist = ChangelistConfig(directory: directory)
        curves.levels = try parseList(levels)
        changelist.counts = try parseList(changelistCounts)
        curves.dropCaches = dropCaches
        curves.cacheBytes = cacheMib << 20
        changelist.cacheBytes = cacheMib << 20
        if smoke {
            curves.levels = [0, 1, 5]
            curves.regionChunks = 64
            curves.randomWrites = 32
            curves.copyOutWrites = 16
            curves.createDeleteSamples = 4
            curves.storeBytes = 64 << 20
            changelist.volumeBytes = 1 << 30
            changelist.storeBytes = 32 << 20
            changelist.counts = [1, 10, 300]
        }
        if !skipCurves { try CurveBench(curves, results: results).run() }
        if !skipChangelist { try runChangelist(changelist, results: results) }
        for name in ["origin", "store", "reference", "cl-origin", "cl-store"] {
            try? FileManager.default.removeItem(atPath: directory + "/" + name)
        }
        if let output {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(results.all).write(to: URL(fileURLWithPath: output))
        }
        print("\(results.all.count) figures measured")
    }

    func parseList(_ text: String) throws -> [Int] {
        try text.split(separator: ",").map {
            guard let n = Int($0.trimmingCharacters(in: .whitespaces)), n >= 0 else { throw ValidationError("'\($0)' is not a count") }
            return n
        }
    }
}
