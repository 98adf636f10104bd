// How numbers and UUIDs are written for people (messages, status, the tools) and read back.

/// 1234567 -> "1,234,567" (sizes print like the original's).
public func formatCount(_ n: UInt64) -> String {
    let digits = Array(String(n))
    var out = ""
    for (i, d) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(d)
    }
    return out
}

/// "0123abcd-..." -> 16 bytes, nil when it is not a UUID.
public func parseUUID(_ text: String) -> [UInt8]? {
    let hex = Array(text.utf8.filter { $0 != UInt8(ascii: "-") })
    guard hex.count == 32 else { return nil }
    var bytes: [UInt8] = []
    for i in stride(from: 0, to: 32, by: 2) {
        guard let b = UInt8(String(decoding: hex[i..<i + 2], as: UTF8.self), radix: 16) else { return nil }
        bytes.append(b)
    }
    return bytes
}

public func formatUUID(_ bytes: [UInt8]) -> String {
    let hex = bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }
    return [0..<4, 4..<6, 6..<8, 8..<10, 10..<16].map { hex[$0].joined() }.joined(separator: "-")
}
