// Small file-system helpers the server and zumastor share: directories, mount points, C strings.

import Foundation
import SnapStore
import VolumeInterface

/// Creates a directory and its parents; an error names the directory.
func makeDirectory(_ path: String, mode: Int = 0o755) throws {
    do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: mode])
    } catch {
        let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
        throw VolumeError.system("cannot create directory \(path): \(underlying.map { describeErrno(Int32($0.code)) } ?? "\(error)")")
    }
}

/// The text of a NUL-terminated C string held in an array.
func stringFromC(_ chars: [CChar]) -> String {
    String(decoding: chars.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Whether `path` is a mount point (its device differs from its parent's).
public func isMountPoint(_ path: String) -> Bool {
    var a = stat(), b = stat()
    guard lstat(path, &a) == 0, lstat(path + "/..", &b) == 0 else {
        // A dead FUSE mount answers ENOTCONN: it is a mount point.
        return errno == ENOTCONN
    }
    // A symbolic link is not one, though its `..` is the directory it points at.
    return (a.st_mode & S_IFMT) != S_IFLNK && a.st_dev != b.st_dev
}
