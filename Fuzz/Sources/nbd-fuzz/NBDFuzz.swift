// Plays arbitrary bytes as an NBD client against the server's decoder and connection handler
// (an embedded channel; store work runs inline on a real store in a scratch directory). The
// first input byte steers the harness:
//   bit 0: the connection is a TCP one that requires TLS (every option but STARTTLS and ABORT
//          refused; STARTTLS puts TLS under the rest, which then meets BoringSSL);
//   bits 1-3: the rest arrives in pieces of 1, 2, 3, 7, 16, 64, 512 bytes or at once, so that
//          every message is also cut at every place.
// The rest is what the client sends after the server's greeting. The server must answer or
// close, never crash (AddressSanitizer is on); once the connection is closed, every export it
// opened is closed again (a leaked open would pin a snapshot forever).
// ZUMA_NBD_FUZZ_CORPUS=DIR makes the seed corpus there and exits instead.

import FuzzDriver
import Crypto
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import SnapStore
@testable import VolumeServer
import X509

/// A scratch volume (1 MiB origin, a read-only snapshot 5 and a writable snapshot 6) and TLS
/// files, made once for the whole run and removed at exit.
final class Scratch {
    let directory: String
    let host: VolumeHost
    let context: NBDContext
    let tls: NBDTLSConfiguration

    init() throws {
        directory = NSTemporaryDirectory() + "zuma-nbd-fuzz-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let storePath = directory + "/store", originPath = directory + "/origin"
        FileManager.default.createFile(atPath: storePath, contents: nil)
        FileManager.default.createFile(atPath: originPath, contents: nil)
        truncate(storePath, 8 << 20)
        truncate(originPath, 1 << 20)
        do {  // the devices (and the store's lock) go at the end of this scope
            let s = try Store.initialize(store: try FileDevice(path: storePath), origin: try FileDevice(path: originPath),
                                         chunkSizeBytes: 4096, originPath: originPath)
            try s.close()
        }
        host = try VolumeHost(storePath: storePath)
        _ = try host.createSnapshot(tag: 5, name: "", priority: 0)
        _ = try host.createSnapshot(tag: 6, name: "", priority: 0)
        host.setWritable(true, snapshot: 6)
        var logger = Logger(label: "nbd-fuzz")
        logger.logLevel = .critical
        context = NBDContext(volume: "vol", host: host, pool: nil, logger: logger)
        tls = try Scratch.makeTLS(directory)
        atexit { try? FileManager.default.removeItem(atPath: scratchDirectory) }
    }

    static func makeTLS(_ directory: String) throws -> NBDTLSConfiguration {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let name = try DistinguishedName { CommonName("nbd-fuzz") }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: key.publicKey, notValidBefore: now - 3600,
            notValidAfter: now + 86_400 * 365, issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil)) },
            issuerPrivateKey: key)
        let pem = try certificate.serializeAsPEM().pemString
        try pem.write(toFile: directory + "/" + NBDTLSConfiguration.authorityFile, atomically: false, encoding: .utf8)
        try pem.write(toFile: directory + "/" + NBDTLSConfiguration.certificateFile, atomically: false, encoding: .utf8)
        let keyPath = directory + "/" + NBDTLSConfiguration.keyFile
        try key.serializeAsPEM().pemString.write(toFile: keyPath, atomically: false, encoding: .utf8)
        chmod(keyPath, 0o600)
        return try NBDTLSConfiguration(directory: directory)
    }
}

nonisolated(unsafe) var scratchDirectory = ""
nonisolated(unsafe) let scratch: Scratch = {
    do {
        let s = try Scratch()
        scratchDirectory = s.directory
        return s
    } catch {
        fatalError("cannot make the fuzzer's scratch volume: \(error)")
    }
}()

let pieceSizes = [Int.max, 1, 2, 3, 7, 16, 64, 512]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size >= 1 else { return 0 }
    let control = data[0]
    let input = UnsafeBufferPointer(start: data + 1, count: size - 1)
    let s = scratch
    let channel = EmbeddedChannel()
    do {
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(NBDDecoder()))
        try channel.pipeline.syncOperations.addHandler(NBDConnectionHandler(context: s.context, tls: control & 1 != 0 ? s.tls : nil))
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/nbd-fuzz")).wait()
    } catch {
        fatalError("cannot set up the channel: \(error)")
    }
    let piece = pieceSizes[Int(control >> 1) & 7]
    var at = 0
    while at < input.count && channel.isActive {
        let n = min(piece, input.count - at)
        var buffer = channel.allocator.buffer(capacity: n)
        buffer.writeBytes(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(input)[at..<(at + n)]))
        // Errors reach the handler, which closes; an embedded channel rethrows them too.
        _ = try? channel.writeInbound(buffer)
        channel.embeddedEventLoop.run()
        while (try? channel.readOutbound(as: ByteBuffer.self)) ?? nil != nil {}
        at += n
    }
    _ = try? channel.finish()
    channel.embeddedEventLoop.run()
    for tag in [nil, 5, 6] as [UInt64?] where s.host.openCount(snapshot: tag) != 0 {
        fatalError("the connection ended with \(tag.map { "snapshot \($0)" } ?? "the origin") still open \(s.host.openCount(snapshot: tag)) time(s)")
    }
    return 0
}

/// Seeds: whole conversations of a client (the handshake's options, then every request kind),
/// on the origin, a read-only and a writable snapshot, and the TLS-required start.
func makeCorpus(_ directory: String) throws {
    var b: [UInt8] = []
    func be<T: FixedWidthInteger>(_ v: T) { b += withUnsafeBytes(of: v.bigEndian, Array.init) }
    func option(_ code: UInt32, _ data: [UInt8] = []) { be(NBD.optionMagic); be(code); be(UInt32(data.count)); b += data }
    func named(_ name: String, infos: [UInt16] = []) -> [UInt8] {
        var d = withUnsafeBytes(of: UInt32(name.utf8.count).bigEndian, Array.init) + Array(name.utf8)
        d += withUnsafeBytes(of: UInt16(infos.count).bigEndian, Array.init)
        for i in infos { d += withUnsafeBytes(of: i.bigEndian, Array.init) }
        return d
    }
    func request(_ type: UInt16, flags: UInt16 = 0, offset: UInt64, length: UInt32, payload: Bool = false) {
        be(NBD.requestMagic); be(flags); be(type); be(UInt64(b.count)); be(offset); be(length)
        if payload { b += [UInt8](repeating: 0xA5, count: Int(length)) }
    }
    func requests() {
        request(NBD.cmdWrite, offset: 4096, length: 4096, payload: true)
        request(NBD.cmdWrite, flags: NBD.cmdFlagFUA, offset: 0, length: 512, payload: true)
        request(NBD.cmdRead, offset: 0, length: 8192)
        request(NBD.cmdFlush, offset: 0, length: 0)
        request(NBD.cmdWriteZeroes, offset: 65536, length: 16384)
        request(NBD.cmdWriteZeroes, flags: NBD.cmdFlagNoHole, offset: 131072, length: 4096)
        request(NBD.cmdTrim, flags: NBD.cmdFlagFUA, offset: 8192, length: 4096)
        request(NBD.cmdRead, offset: (1 << 20) - 4096, length: 4096)
        request(NBD.cmdDisconnect, offset: 0, length: 0)
    }
    func emit(_ name: String, control: UInt8) throws {
        try Data([control] + b).write(to: URL(fileURLWithPath: directory + "/" + name))
        b = []
    }
    be(NBD.clientFlagFixedNewstyle | NBD.clientFlagNoZeroes)
    option(NBD.optStructuredReply); option(NBD.optList)
    option(NBD.optInfo, named("vol", infos: [NBD.infoName, NBD.infoDescription, NBD.infoBlockSize]))
    option(NBD.optGo, named("vol")); requests()
    try emit("origin-go", control: 0)
    be(NBD.clientFlagFixedNewstyle); option(NBD.optGo, named("vol@6")); requests()
    try emit("writable-snapshot-in-pieces", control: 1 << 1 | 4 << 1)
    be(NBD.clientFlagFixedNewstyle | NBD.clientFlagNoZeroes); option(NBD.optExportName, Array("vol@5".utf8)); requests()
    try emit("snapshot-export-name", control: 0)
    be(NBD.clientFlagFixedNewstyle | NBD.clientFlagNoZeroes); option(NBD.optList); option(NBD.optGo, named("vol")); option(NBD.optStartTLS)
    try emit("tls-required", control: 1)
    be(NBD.clientFlagFixedNewstyle); option(NBD.optStartTLS); option(NBD.optAbort)
    try emit("tls-not-offered", control: 0)
}

@_cdecl("nbd_fuzz_main")
public func nbdFuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    fuzzMain(argc, argv, corpus: ("ZUMA_NBD_FUZZ_CORPUS", makeCorpus)) { fuzz($0, $1) }
}
