// The errno a block file or an NBD reply reports for an error of the store or the server.

import Foundation
import SnapStore
import VolumeInterface

/// The errno a block device reports for an error.
func errnoCode(_ error: Error) -> Int32 {
    switch error {
    case let e as StoreError:
        switch e {
        case .noSpace: return ENOSPC
        case .outOfRange, .invalidArgument: return EINVAL
        case .snapshotMissing: return ENOENT
        case let .io(_, _, code): return code == ENOSPC ? ENOSPC : EIO
        default: return EIO
        }
    case let e as VolumeError:
        switch e {
        case .inUse: return EBUSY
        case .invalidArgument: return EINVAL
        default: return EIO
        }
    default: return EIO
    }
}
