import Foundation
import Logging
import NIOPosix
import SnapStore
import Testing
@testable import VolumeServer
import VolumeInterface

/// Origin writes of many extents over a real control socket (a replica's applier writes so):
/// one `writeExtents` request and one commit per batch where the server takes it, one write
/// and one commit per extent where it does not (an older server); the same bytes either way.
@Suite struct BatchedWriteTests {
    final class Operations: ServerOperations, @unchecked Sendable {
        let store: String
        let features: [String]?
        init(store: String, features: [String]?) { (self.store, self.features) = (store, features) }
        var info: ServerInfo {
            ServerInfo(volume: "t", storePath: store, originPath: "", processID: getpid(), blockFileDirectory: "",
                       nbdSocket: nil, nbdListen: nil, features: features)
        }
        func attach(tag: UInt64?, writable: Bool) throws -> AttachedDevice { throw VolumeError.invalidArgument("no devices here") }
        func detach(tag: UInt64?) throws -> AttachedDevice { throw VolumeError.invalidArgument("no devices here") }
        func devices() -> [AttachedDevice] { [] }
        func originResized() {}
    }

    /// A server on `scratch` with `features`, its client, and `body`; everything closed after.
    func withServer(_ scratch: ScratchVolume, features: [String]?, _ body: (VolumeHost, ControlClient) throws -> Void) throws {
        let host = try scratch.host()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let socket = scratch.directory + "/control"
        let listener = try ControlListener(path: socket, group: group, host: host, server: Operations(store: scratch.storePath, features: features),
                                           logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        defer {
            listener.close()
            try? group.syncShutdownGracefully()
            try? host.close()
        }
        try body(host, try ControlClient(socketPath: socket))
    }

    @Test(arguments: [true, false])
    func extentsGoInOneCommitWhereTheServerTakesThem(batched: Bool) throws {
        let scratch = try ScratchVolume(originBytes: 10 << 20, storeBytes: 64 << 20)
        var rng = SystemRandomNumberGenerator()
        // 300 extents of 4 KiB to 64 KiB, each in a 24 KiB slot of its own: 7 MiB in all.
        var extents: [(offset: UInt64, bytes: [UInt8])] = []
        for i in 0..<300 {
            let length = 4096 + (i % 5) * 4096
            var bytes = [UInt8](repeating: 0, count: length)
            for k in 0..<length { bytes[k] = UInt8.random(in: 0...255, using: &rng) }
            extents.append((UInt64(i) * 24576 + UInt64(i % 7) * 512, bytes))
        }
        extents.append((7_400_000, [UInt8](repeating: 9, count: 1 << 20)))
        try withServer(scratch, features: batched ? [ServerInfo.featureWriteExtents] : nil) { host, client in
            try [UInt8](repeating: 1, count: 10 << 20).withUnsafeBytes { try host.write(snapshot: nil, offset: 0, $0) }
            _ = try client.createSnapshot(tag: 1, name: "", priority: 0)
            let before = try client.status().sequence
            try withBuffers(extents.map(\.bytes)) { buffers in
                try client.write(originExtents: zip(extents, buffers).map { ($0.offset, $1) })
            }
            let commits = try client.status().sequence - before
            #expect(batched ? commits == 1 : commits == UInt64(extents.count), "\(commits) commits")
            try client.flush()
            for e in extents {
                var got = [UInt8](repeating: 0, count: e.bytes.count)
                try got.withUnsafeMutableBytes { try client.read(snapshot: nil, offset: e.offset, into: $0) }
                #expect(got == e.bytes)
            }
            var snapshot: [UInt8] = []
            try client.read(snapshot: 1, offset: 0, length: nil) { snapshot.append(contentsOf: $0) }
            #expect(snapshot == [UInt8](repeating: 1, count: 10 << 20))
            #expect(try client.check(repair: false).isClean)
        }
    }

    /// A bad extent (past the origin's end) fails the request with nothing left of it on the
    /// connection: the next request is answered as usual.
    @Test func aRefusedBatchLeavesTheConnectionUsable() throws {
        let scratch = try ScratchVolume(originBytes: 1 << 20)
        try withServer(scratch, features: [ServerInfo.featureWriteExtents]) { _, client in
            let good = [UInt8](repeating: 5, count: 4096)
            try good.withUnsafeBytes { b in
                #expect(throws: (any Error).self) { try client.write(originExtents: [(0, b), (2 << 20, b)]) }
                try client.write(originExtents: [(8192, b)])
            }
            var got = [UInt8](repeating: 0, count: 4096)
            try got.withUnsafeMutableBytes { try client.read(snapshot: nil, offset: 8192, into: $0) }
            #expect(got == good)
            #expect(try client.status().originSizeBytes == 1 << 20)
        }
    }

    private func withBuffers<T>(_ arrays: [[UInt8]], _ body: ([UnsafeRawBufferPointer]) throws -> T) throws -> T {
        func nest(_ k: Int, _ done: [UnsafeRawBufferPointer]) throws -> T {
            guard k < arrays.count else { return try body(done) }
            return try arrays[k].withUnsafeBytes { try nest(k + 1, done + [$0]) }
        }
        return try nest(0, [])
    }
}
