// Where zumastor keeps its state, as in the seed guide: configuration under /var/lib/zumastor,
// sockets, block files and mounts under /var/run/zumastor, logs under /var/log/zumastor.
// ZUMASTOR_ROOT=/some/dir puts all of it (and /etc/zumastor) under that prefix, so tests and
// several instances run side by side. Device names stay in /dev/mapper.

import Foundation
import VolumeServer

public struct ZumastorPaths: Sendable, Equatable {
    /// "" for the real system, or the ZUMASTOR_ROOT prefix.
    public let root: String

    public init(root: String = "") {
        var r = root
        while r.hasSuffix("/") { r.removeLast() }
        self.root = r
    }

    public static func fromEnvironment() -> ZumastorPaths {
        ZumastorPaths(root: ProcessInfo.processInfo.environment["ZUMASTOR_ROOT"] ?? "")
    }

    public var library: String { root + "/var/lib/zumastor" }
    public var run: String { root + "/var/run/zumastor" }
    public var log: String { root + "/var/log/zumastor" }
    public var etc: String { root + "/etc/zumastor" }

    public var volumesDirectory: String { library + "/volumes" }
    public func volumeDirectory(_ volume: String) -> String { volumesDirectory + "/" + volume }
    public func configFile(_ volume: String) -> String { volumeDirectory(volume) + "/config.json" }
    public func serverSocket(_ volume: String) -> String { run + "/servers/" + volume }
    public func blockFiles(_ volume: String) -> String { run + "/devices/" + volume }
    public func defaultMountPoint(_ volume: String) -> String { run + "/mount/" + volume }
    public func defaultSnapshotDirectory(_ volume: String) -> String { run + "/snapshot/" + volume }
    public func logDirectory(_ volume: String) -> String { log + "/" + volume }
    public func serverLog(_ volume: String) -> String { logDirectory(volume) + "/server.log" }
}
