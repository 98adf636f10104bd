// HOST[:PORT] as a sysadmin writes it: a name, an IPv4 address, or an IPv6 address in
// brackets when a port follows ([fe80::1]:11235); the port defaults to 11235.

public struct Endpoint: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public static let defaultPort = 11235

    public init(host: String, port: Int) { (self.host, self.port) = (host, port) }

    public init(parsing text: String, defaultPort: Int = Endpoint.defaultPort) throws {
        var host = text
        var port = defaultPort
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw TransportError.invalid("'\(text)': an IPv6 address in [ ] lacks its ]") }
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()) else { throw TransportError.invalid("'\(text)': expected [ADDRESS]:PORT") }
                port = p
            }
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            host = String(text[..<colon])
            guard let p = Int(text[text.index(after: colon)...]) else { throw TransportError.invalid("'\(text)': the port is not a number") }
            port = p
        }
        guard !host.isEmpty, !host.contains(where: { $0 == " " || $0 == "/" }) else { throw TransportError.invalid("'\(text)': no host") }
        guard (1...65535).contains(port) else { throw TransportError.invalid("'\(text)': the port must be 1 to 65535") }
        (self.host, self.port) = (host, port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
