// A volume on temporary files for the server tests, removed when the test ends.

import Foundation
import SnapStore
import VolumeServer

final class ScratchVolume {
    let directory: String
    let storePath: String
    let originPath: String

    init(originBytes: Int = 4 << 20, storeBytes: Int = 16 << 20, chunkSize: Int = 4096) throws {
        directory = NSTemporaryDirectory() + "zuma-test-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        storePath = directory + "/store"
        originPath = directory + "/origin"
        FileManager.default.createFile(atPath: storePath, contents: nil)
        FileManager.default.createFile(atPath: originPath, contents: nil)
        truncate(storePath, off_t(storeBytes))
        truncate(originPath, off_t(originBytes))
        let s = try Store.initialize(store: try FileDevice(path: storePath), origin: try FileDevice(path: originPath),
                                     chunkSizeBytes: chunkSize, originPath: originPath)
        try s.close()
    }

    func host() throws -> VolumeHost { try VolumeHost(storePath: storePath) }

    deinit { try? FileManager.default.removeItem(atPath: directory) }
}
