import ArgumentParser
import Foundation
import SnapStore

struct Initialize: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "initialize",
        abstract: "Make SNAPSTORE an empty snapshot store for ORIGIN.",
        discussion: "The origin's data stays in place: an existing filesystem can be adopted.")

    @Flag(name: .short, help: "Overwrite an existing snapshot store without asking.")
    var yes = false

    @Option(name: [.customShort("c"), .customLong("chunksize")], help: "Chunk size: a power of two from 4K to 1M (default 16K).",
            transform: parseSize)
    var chunkSize: UInt64 = 16 << 10

    @Argument(help: "The snapshot store to initialize.")
    var snapstore: String

    @Argument(help: "The origin volume.")
    var origin: String

    func validate() throws {
        guard chunkSize >= 4096, chunkSize <= 1 << 20, chunkSize & (chunkSize - 1) == 0 else {
            throw ValidationError("chunk size \(chunkSize) must be a power of two from 4K to 1M")
        }
    }

    func run() throws {
        let store = try FileDevice(path: snapstore)
        let originDevice = try FileDevice(path: origin)
        if !yes, let existing = try? Store.readSuperblock(store) {
            FileHandle.standardError.write(Data("\(snapstore) already holds a snapshot store for \(existing.originPath) with \(existing.snapshotCount) snapshots; overwrite it? [y/N] ".utf8))
            let answer = readLine()?.lowercased() ?? ""
            guard answer == "y" || answer == "yes" else {
                printError("ddsnap: not overwriting \(snapstore) (pass -y to overwrite without asking)")
                throw ExitCode(1)
            }
        }
        let absolute = originDevice.path.hasPrefix("/") ? originDevice.path
            : FileManager.default.currentDirectoryPath + "/" + originDevice.path
        let s = try Store.initialize(store: store, origin: originDevice, chunkSizeBytes: Int(chunkSize), originPath: absolute)
        let st = s.status
        print("initialized \(snapstore): \(formatCount(st.storeChunks)) chunks of \(formatCount(UInt64(st.chunkSizeBytes))) bytes for origin \(absolute) (\(formatCount(st.originSizeBytes)) bytes)")
    }
}
