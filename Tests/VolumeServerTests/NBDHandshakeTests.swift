import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import SnapStore
import Testing
@testable import VolumeServer

/// The NBD handshake and the request checks that answer without touching the store, on an
/// embedded channel (the store calls of the transmission phase are covered end to end).
@Suite struct NBDHandshakeTests {
    final class Harness {
        let scratch: ScratchVolume
        let host: VolumeHost
        let pool = NIOThreadPool(numberOfThreads: 1)
        let channel = EmbeddedChannel()

        init(tls: NBDTLSConfiguration? = nil) throws {
            scratch = try ScratchVolume()
            host = try scratch.host()
            _ = try host.createSnapshot(tag: 5, name: "", priority: 0)
            let context = NBDContext(volume: "vol", host: host, pool: pool, logger: Logger(label: "test"))
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(NBDDecoder()))
            try channel.pipeline.syncOperations.addHandler(NBDConnectionHandler(context: context, tls: tls))
            try channel.connect(to: SocketAddress(unixDomainSocketPath: "/nbd-test")).wait()
        }

        func send(_ build: (inout ByteBuffer) -> Void) throws {
            var b = ByteBuffer()
            build(&b)
            try channel.writeInbound(b)
        }

        func option(_ code: UInt32, _ data: [UInt8] = []) throws {
            try send {
                $0.writeInteger(NBD.optionMagic)
                $0.writeInteger(code)
                $0.writeInteger(UInt32(data.count))
                $0.writeBytes(data)
            }
        }

        func request(type: UInt16, flags: UInt16 = 0, cookie: UInt64, offset: UInt64, length: UInt32, payload: [UInt8] = []) throws {
            try send {
                $0.writeInteger(NBD.requestMagic)
                $0.writeInteger(flags)
                $0.writeInteger(type)
                $0.writeInteger(cookie)
                $0.writeInteger(offset)
                $0.writeInteger(length)
                $0.writeBytes(payload)
            }
        }

        /// Everything the server sent since the last call.
        func output() throws -> ByteBuffer {
            var all = ByteBuffer()
            while var b = try channel.readOutbound(as: ByteBuffer.self) { all.writeBuffer(&b) }
            return all
        }

        /// Option replies: (option, type, payload).
        func optionReplies() throws -> [(UInt32, UInt32, ByteBuffer)] {
            var out = try output()
            var replies: [(UInt32, UInt32, ByteBuffer)] = []
            while out.readableBytes > 0 {
                #expect(out.readInteger(as: UInt64.self) == NBD.optionReplyMagic)
                let option = out.readInteger(as: UInt32.self)!, type = out.readInteger(as: UInt32.self)!
                let length = out.readInteger(as: UInt32.self)!
                replies.append((option, type, out.readSlice(length: Int(length))!))
            }
            return replies
        }

        func go(_ name: String) throws -> [(UInt32, UInt32, ByteBuffer)] {
            var data: [UInt8] = []
            data += withUnsafeBytes(of: UInt32(name.utf8.count).bigEndian, Array.init)
            data += Array(name.utf8)
            data += [0, 0]
            try option(NBD.optGo, data)
            return try optionReplies()
        }

        /// Handshake up to the options: greeting read, client flags sent.
        func greet() throws {
            var hello = try output()
            #expect(hello.readInteger(as: UInt64.self) == NBD.initMagic)
            #expect(hello.readInteger(as: UInt64.self) == NBD.optionMagic)
            #expect(hello.readInteger(as: UInt16.self) == NBD.flagFixedNewstyle | NBD.flagNoZeroes)
            try send { $0.writeInteger(NBD.clientFlagFixedNewstyle | NBD.clientFlagNoZeroes) }
        }

        /// Simple replies: (error, cookie).
        func simpleReplies() throws -> [(UInt32, UInt64)] {
            var out = try output()
            var replies: [(UInt32, UInt64)] = []
            while out.readableBytes >= 16 {
                #expect(out.readInteger(as: UInt32.self) == NBD.simpleReplyMagic)
                replies.append((out.readInteger()!, out.readInteger()!))
            }
            return replies
        }

        deinit { try? pool.syncShutdownGracefully() }
    }

    @Test func listInfoAndUnknownOptions() throws {
        let h = try Harness()
        try h.greet()
        try h.option(NBD.optList)
        let list = try h.optionReplies()
        #expect(list.map(\.1) == [NBD.repServer, NBD.repServer, NBD.repAck])
        var names: [String] = []
        for (_, type, var payload) in list where type == NBD.repServer {
            let n = payload.readInteger(as: UInt32.self)!
            names.append(payload.readString(length: Int(n))!)
        }
        #expect(names == ["vol", "vol@5"])
        try h.option(NBD.optList, [1])
        #expect(try h.optionReplies().map(\.1) == [NBD.repErrInvalid])
        try h.option(99)
        #expect(try h.optionReplies().map(\.1) == [NBD.repErrUnsupported])
        try h.option(NBD.optStartTLS)
        #expect(try h.optionReplies().map(\.1) == [NBD.repErrPolicy])
        #expect(try h.go("vol@6").map(\.1) == [NBD.repErrUnknown])
        #expect(try h.go("other").map(\.1) == [NBD.repErrUnknown])
        try h.option(NBD.optGo, [0, 0, 0, 9, 1])  // a name longer than the data
        #expect(try h.optionReplies().map(\.1) == [NBD.repErrInvalid])
        // An option too large to hold is skipped whole; the next one is read in step.
        try h.option(NBD.optInfo, [UInt8](repeating: 7, count: NBD.optionBytesMax + 1))
        #expect(try h.optionReplies().map(\.1) == [NBD.repErrTooBig])
        #expect(h.channel.isActive)
        #expect(try h.go("vol@5").map(\.1) == [NBD.repInfo, NBD.repInfo, NBD.repAck])
        #expect(try h.host.snapshot(tag: 5)?.openCount == 1)
        try h.channel.close().wait()
        #expect(try h.host.snapshot(tag: 5)?.openCount == 0)
    }

    @Test func readOnlyExportAndRequestChecks() throws {
        let h = try Harness()
        try h.greet()
        let replies = try h.go("vol@5")
        var info = replies[0].2
        #expect(info.readInteger(as: UInt16.self) == NBD.infoExport)
        #expect(info.readInteger(as: UInt64.self) == 4 << 20)
        #expect(info.readInteger(as: UInt16.self)! & NBD.transReadOnly != 0)
        try h.request(type: NBD.cmdWrite, cookie: 1, offset: 0, length: 4, payload: [1, 2, 3, 4])
        try h.request(type: NBD.cmdRead, cookie: 2, offset: (4 << 20) - 1, length: 2)
        try h.request(type: 77, cookie: 3, offset: 0, length: 0)
        try h.request(type: NBD.cmdRead, flags: 1 << 9, cookie: 4, offset: 0, length: 1)
        try h.request(type: NBD.cmdRead, cookie: 5, offset: 0, length: UInt32(NBD.requestBytesMax) + 1)
        let answers = try h.simpleReplies()
        #expect(answers.map(\.1) == [1, 2, 3, 4, 5])
        #expect(answers.map(\.0) == [NBD.errPerm, NBD.errInvalid, NBD.errInvalid, NBD.errInvalid, NBD.errOverflow])
        #expect(h.channel.isActive)
    }

    @Test func oversizedWriteIsSkippedInStep() throws {
        let h = try Harness()
        try h.greet()
        _ = try h.go("vol")
        let big = UInt32(NBD.requestBytesMax) + 8
        try h.request(type: NBD.cmdWrite, cookie: 9, offset: 0, length: big, payload: [UInt8](repeating: 0, count: Int(big)))
        try h.request(type: NBD.cmdWrite, cookie: 10, offset: 1 << 40, length: 1, payload: [0])
        #expect(try h.simpleReplies().map { [UInt64($0.0), $0.1] } == [[UInt64(NBD.errOverflow), 9], [UInt64(NBD.errNoSpace), 10]])
    }

    @Test func wrongMagicAndUnknownClientFlagsCloseTheConnection() throws {
        let h = try Harness()
        try h.greet()
        try? h.send { $0.writeInteger(UInt64(0x1234_5678_9abc_def0)) }
        #expect(!h.channel.isActive)

        let g = try Harness()
        _ = try g.output()
        try g.send { $0.writeInteger(UInt32(0x80)) }
        #expect(!g.channel.isActive)
    }
}
