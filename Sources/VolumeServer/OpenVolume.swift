// Opening a volume for a command: through its server's control socket, or the store itself.

import Foundation
import SnapStore
import VolumeInterface

/// Reaches the volume at `path`: through its server when `path` is a control socket, else by
/// opening the store (and `origin`, or the one the store records), each under an exclusive
/// lock (`StoreError.inUse` when a server or another command holds it).
public func openVolume(_ path: String, origin: String? = nil, cacheSizeBytes: Int? = nil,
                       onEvent: @escaping @Sendable (StoreEvent) -> Void = { _ in }) throws -> any VolumeAccess {
    if isSocket(path) {
        guard origin == nil, cacheSizeBytes == nil else {
            throw VolumeError.invalidArgument("--origin and --cache-size apply when opening a store directly, not through a server's socket")
        }
        return try ControlClient(socketPath: path)
    }
    return try VolumeHost(storePath: path, originPath: origin, cacheSizeBytes: cacheSizeBytes, onEvent: onEvent)
}

public func isSocket(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK
}
