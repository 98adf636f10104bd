import VolumeInterface

// Sizes as sysadmins type them: "16K", "512M", "2G", "1T" (powers of 1024; "KiB" too),
// plain numbers are bytes. Shared by ddsnap and zumastor.

public enum ByteSize {
    public static func parse(_ text: String) throws -> UInt64 {
        let units: [Character: UInt64] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40]
        var digits = Substring(text.filter { !$0.isWhitespace })
        if digits.lowercased().hasSuffix("b") && digits.count > 1 && !(digits.dropLast().last?.isNumber ?? true) { digits.removeLast() }
        var multiplier: UInt64 = 1
        if digits.last?.lowercased() == "i" { digits.removeLast() }
        if let last = digits.last?.lowercased().first, let m = units[last] {
            multiplier = m
            digits.removeLast()
        }
        guard let n = UInt64(digits) else {
            throw VolumeError.invalidArgument("'\(text)' is not a size (a number of bytes, optionally with K, M, G or T)")
        }
        let (product, overflow) = n.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { throw VolumeError.invalidArgument("size '\(text)' is too large") }
        return product
    }
}
