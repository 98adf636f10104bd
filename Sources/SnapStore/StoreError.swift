// Every operating error the store reports. Bugs are assertions (preconditions), not errors:
// an error here is something a sysadmin can act on (bad input, EIO, ENOSPC, corruption).

public enum StoreError: Error, Equatable, Codable, CustomStringConvertible {
    /// A system call failed; `operation` names what we were doing, `path` the device.
    case io(operation: String, path: String, errno: Int32)
    /// The device is not a snapshot store (no valid superblock in either slot).
    case notAStore(path: String, reason: String)
    /// On-disk metadata failed a check; the text says which block and what was wrong.
    case corrupt(String)
    case unsupportedVersion(UInt16)
    case unsupportedFeatures(UInt32)
    case snapshotExists(UInt64)
    case snapshotMissing(UInt64)
    case snapshotSquashed(UInt64)
    case usecountUnderflow(UInt64)
    case usecountOverflow(UInt64)
    /// The store is full and no snapshot can be given up.
    case noSpace
    case invalidArgument(String)
    /// Another process holds the exclusive lock.
    case inUse(path: String)
    /// The origin is not the one this store was made for, or it changed size behind our back.
    case originMismatch(String)
    /// An offset/length outside a device or snapshot.
    case outOfRange(String)

    public var description: String {
        switch self {
        case let .io(operation, path, errno):
            return "\(operation) \(path): \(describeErrno(errno))"
        case let .notAStore(path, reason):
            return "\(path) is not a snapshot store: \(reason)"
        case let .corrupt(text): return "store is corrupt: \(text)"
        case let .unsupportedVersion(v): return "store format version \(v) is not supported (this build reads version \(Format.version))"
        case let .unsupportedFeatures(f): return "store uses unknown incompatible features 0x\(String(f, radix: 16))"
        case let .snapshotExists(tag): return "snapshot \(tag) already exists"
        case let .snapshotMissing(tag): return "snapshot \(tag) doesn't exist"
        case let .snapshotSquashed(tag): return "snapshot \(tag) was squashed (its data was given up when the store filled)"
        case let .usecountUnderflow(tag): return "Usecount underflow on snapshot \(tag)"
        case let .usecountOverflow(tag): return "Usecount overflow on snapshot \(tag)"
        case .noSpace: return "snapshot store is full and no snapshot can be given up (ENOSPC)"
        case let .invalidArgument(text): return text
        case let .inUse(path): return "\(path) is in use by another process (a ddsnap server or command holds its lock)"
        case let .originMismatch(text): return text
        case let .outOfRange(text): return text
        }
    }
}
