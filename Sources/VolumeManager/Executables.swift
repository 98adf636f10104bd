// Finding the programs zumastor runs: its own `ddsnap` and `zumastor`, and system tools.

import Foundation

enum Executables {
    /// `name` from the environment variable `variable`, else beside this program (this
    /// program itself when it is `name`), else beside `other`, else on PATH; nil when none.
    static func find(_ name: String, variable: String, besides other: String? = nil) -> String? {
        if let path = ProcessInfo.processInfo.environment[variable] { return path }
        var directories: [String] = []
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            directories.append((exe as NSString).deletingLastPathComponent)
        }
        if let other, other.contains("/") { directories.append((other as NSString).deletingLastPathComponent) }
        for dir in directories where FileManager.default.isExecutableFile(atPath: dir + "/" + name) {
            return dir + "/" + name
        }
        return onPath(name)
    }

    /// The first executable `name` in the directories of PATH.
    static func onPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"
        for dir in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return nil
    }
}
