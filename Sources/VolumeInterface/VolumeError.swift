// Errors of the server layer (the store's own errors stay StoreError and cross the control
// socket unchanged, so a command prints the same line whichever way it reached the store).

import SnapStore

public enum VolumeError: Error, Equatable, Codable, CustomStringConvertible, Sendable {
    /// The snapshot or origin is attached or exported; the operation would pull it from under its user.
    case inUse(String)
    /// A system facility (FUSE, loop devices, sockets) failed; the text names it and why.
    case system(String)
    /// The control socket or peer spoke something we do not understand.
    case protocolViolation(String)
    /// The server is not running, or went away.
    case unreachable(String)
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .inUse(text), let .system(text), let .invalidArgument(text): return text
        case let .protocolViolation(text): return "control protocol: \(text)"
        case let .unreachable(text): return text
        }
    }
}

