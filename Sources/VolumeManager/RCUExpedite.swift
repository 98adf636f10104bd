// Freezing a filesystem waits for three RCU grace periods (one per freeze level, in the
// kernel's percpu_down_write); on an idle machine each takes a scheduler tick or more, about
// 45 ms in all here, and the filesystem's writers stall for all of it. Expedited grace periods
// (/sys/kernel/rcu_expedited, documented in the kernel's RCU sysfs ABI) end within well under a
// millisecond. A master's freeze switches them on for its own duration only (unless the
// volume was defined with `--no-expedite`): nothing changes when the administrator already
// has them on or the file is missing or read-only. A process killed (SIGKILL) inside the
// window leaves them on, which costs a little CPU system-wide and is never unsafe; signals that
// can be caught are held until the thaw.

import Foundation

enum RCUExpedite {
    static let path = "/sys/kernel/rcu_expedited"

    /// Runs `body` with expedited grace periods, restoring the setting found.
    static func during<T>(_ enabled: Bool, _ body: () throws -> T) rethrows -> T {
        guard enabled, read() == 0, write(1) else { return try body() }
        defer { _ = write(0) }
        return try body()
    }

    static func read() -> Int? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var byte: UInt8 = 0
        guard Foundation.read(fd, &byte, 1) == 1 else { return nil }
        return byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? Int(byte - UInt8(ascii: "0")) : nil
    }

    static func write(_ value: Int) -> Bool {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var byte = UInt8(ascii: "0") + UInt8(value)
        return Foundation.write(fd, &byte, 1) == 1
    }
}
