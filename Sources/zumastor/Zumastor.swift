// `zumastor`: the admin tool. Each command parses, calls one VolumeManager operation and
// prints; errors are one line on stderr and a non-zero exit.

import ArgumentParser
import Foundation
import Replication
import SnapStore
import Transport
import VolumeManager
import VolumeServer
import VolumeInterface

@main
struct Zumastor: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zumastor",
        abstract: "Snapshotted volumes on plain Linux disks: define, start, stop, snapshot, replicate, status, revert, resize.",
        discussion: """
            State lives under /var/lib/zumastor, /var/run/zumastor and /var/log/zumastor; \
            ZUMASTOR_ROOT=/dir puts it all under /dir.
            """,
        version: ControlProtocol.release,
        subcommands: [Define.self, Forget.self, Start.self, Stop.self, Snapshot.self, Delete.self, Status.self, Revert.self, Resize.self,
                      Remount.self, Replicate.self, Key.self, Agent.self, Replicator.self, MetricsExporter.self])

    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
            // Once a store has passed its fill level, every command says so on stderr.
            if !(command is Agent) && !(command is Replicator) && !(command is MetricsExporter) {
                for w in manager().fillWarnings() { FileHandle.standardError.write(Data("zumastor: warning: \(w)\n".utf8)) }
            }
        } catch let error as ZumastorError {
            fail(error)
        } catch let error as VolumeError {
            fail(error)
        } catch let error as StoreError {
            fail(error)
        } catch let error as DeltaError {
            fail(error)
        } catch let error as LinkError {
            fail(error)
        } catch let error as TransportError {
            fail(error)
        } catch {
            exit(withError: error)
        }
    }

    static func fail(_ error: CustomStringConvertible) -> Never {
        FileHandle.standardError.write(Data("zumastor: \(error)\n".utf8))
        Foundation.exit(1)
    }
}

func manager() -> VolumeManager { VolumeManager() }

/// "16K" -> 16384 (powers of 1024).
func parseSize(_ text: String) throws -> UInt64 {
    if text.hasPrefix("-") { throw ValidationError("'\(text)' is not a size: sizes are positive (a number of bytes, or with K, M, G or T)") }
    do { return try ByteSize.parse(text) } catch { throw ValidationError("\(error)") }
}

/// How many snapshots of a kind to keep: 1 to `ScheduleEntry.keepMax`.
func parseKeep(_ text: String) throws -> Int {
    guard let n = Int(text), (1...ScheduleEntry.keepMax).contains(n) else {
        throw ValidationError("'\(text)' is not a count of snapshots to keep: give a whole number from 1 to \(ScheduleEntry.keepMax)")
    }
    return n
}
