// Errors of the network layer, each with what a sysadmin needs to act on it.

public enum TransportError: Error, Equatable, Sendable, CustomStringConvertible {
    /// This host's key or certificate cannot be made or read.
    case identity(String)
    /// A peer whose key is not the pinned one (or that showed none), with its address.
    case refusedPeer(address: String, fingerprint: String?)
    /// A malformed address, port or fingerprint given on the command line.
    case invalid(String)
    /// No connection, or a connection that broke.
    case unreachable(String)

    public var description: String {
        switch self {
        case let .identity(m), let .invalid(m), let .unreachable(m): return m
        case let .refusedPeer(address, fingerprint):
            return "refused \(address): its key \(fingerprint ?? "(none shown)") is not the one pinned for it"
        }
    }
}
