import Crypto
import Foundation
import NIOCore
import NIOSSL
import SnapStore
import VolumeInterface
import Testing
import X509
@testable import VolumeServer

/// A certificate authority and a server certificate of it, as PEM files in a directory in
/// the layout NBDTLSConfiguration reads.
final class TLSFiles {
    let directory: String

    init(keyMode: mode_t = 0o600) throws {
        directory = NSTemporaryDirectory() + "zuma-tls-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let authorityKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let authorityName = try DistinguishedName { CommonName("test authority") }
        let now = Date()
        let authority = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: authorityKey.publicKey,
            notValidBefore: now - 3600, notValidAfter: now + 86_400, issuer: authorityName, subject: authorityName,
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil)) },
            issuerPrivateKey: authorityKey)
        let serverKey = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let server = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: serverKey.publicKey,
            notValidBefore: now - 3600, notValidAfter: now + 86_400, issuer: authorityName,
            subject: try DistinguishedName { CommonName("localhost") }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { Critical(BasicConstraints.notCertificateAuthority) },
            issuerPrivateKey: authorityKey)
        try write(try authority.serializeAsPEM().pemString, NBDTLSConfiguration.authorityFile, 0o644)
        try write(try server.serializeAsPEM().pemString, NBDTLSConfiguration.certificateFile, 0o644)
        try write(try serverKey.serializeAsPEM().pemString, NBDTLSConfiguration.keyFile, keyMode)
    }

    func write(_ text: String, _ name: String, _ mode: mode_t) throws {
        let path = directory + "/" + name
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        chmod(path, mode)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }
}

/// STARTTLS on a listener that requires TLS (the handshake itself is tested end to end with
/// libnbd's nbdinfo and nbdcopy in Tests/cli/server-e2e.sh).
@Suite struct NBDTLSTests {
    @Test func everyOptionButStartTLSAndAbortWaitsForTLS() throws {
        let files = try TLSFiles()
        let h = try NBDHandshakeTests.Harness(tls: try NBDTLSConfiguration(directory: files.directory))
        try h.greet()
        for code in [NBD.optList, NBD.optStructuredReply, NBD.optInfo, NBD.optGo, 99] {
            try h.option(code)
            #expect(try h.optionReplies().map(\.1) == [NBD.repErrTLSRequired])
        }
        #expect(h.channel.isActive)
        try h.option(NBD.optStartTLS, [1])
        #expect(try h.optionReplies().map(\.1) == [NBD.repErrInvalid])
        try h.option(NBD.optStartTLS)
        #expect(try h.optionReplies().map(\.1) == [NBD.repAck])
        // TLS now sits under the NBD handlers: the client's hello is its first input.
        #expect(throws: Never.self) { _ = try h.channel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self) }
    }

    @Test func exportNameWithoutTLSEndsTheSession() throws {
        let files = try TLSFiles()
        let h = try NBDHandshakeTests.Harness(tls: try NBDTLSConfiguration(directory: files.directory))
        try h.greet()
        try h.option(NBD.optExportName, Array("vol".utf8))
        #expect(!h.channel.isActive)
    }

    @Test func plainBytesAfterStartTLSEndTheSession() throws {
        let files = try TLSFiles()
        let h = try NBDHandshakeTests.Harness(tls: try NBDTLSConfiguration(directory: files.directory))
        try h.greet()
        // STARTTLS and, in the same segment, an option a man in the middle slipped in.
        var b = ByteBuffer()
        for code in [NBD.optStartTLS, NBD.optList] {
            b.writeInteger(NBD.optionMagic)
            b.writeInteger(code)
            b.writeInteger(UInt32(0))
        }
        _ = try? h.channel.writeInbound(b)
        // Refused before STARTTLS was even answered.
        #expect(try h.optionReplies().isEmpty)
        #expect(!h.channel.isActive)
    }

    @Test func aHandshakeThatStallsIsClosed() throws {
        let files = try TLSFiles()
        let stalled = try NBDHandshakeTests.Harness(tls: try NBDTLSConfiguration(directory: files.directory))
        try stalled.greet()
        try stalled.option(NBD.optStartTLS)
        _ = try stalled.optionReplies()
        stalled.channel.embeddedEventLoop.advanceTime(by: NBDConnectionHandler.handshakeTimeout + .seconds(1))
        #expect(!stalled.channel.isActive)
        // One that chose an export stays.
        let chosen = try NBDHandshakeTests.Harness()
        try chosen.greet()
        #expect(try chosen.go("vol").map(\.1).last == NBD.repAck)
        chosen.channel.embeddedEventLoop.advanceTime(by: NBDConnectionHandler.handshakeTimeout + .seconds(1))
        #expect(chosen.channel.isActive)
        try chosen.channel.close().wait()
    }

    @Test func filesAreCheckedAtStart() throws {
        let open = try TLSFiles(keyMode: 0o644)
        let error = try #require(throws: VolumeError.self) { try NBDTLSConfiguration(directory: open.directory) }
        #expect("\(error)".contains("server-key.pem is readable by others"))
        let missing = try TLSFiles()
        unlink(missing.directory + "/ca-cert.pem")
        let e2 = try #require(throws: VolumeError.self) { try NBDTLSConfiguration(directory: missing.directory) }
        #expect("\(e2)".contains("ca-cert.pem"))
        // A key that is not the certificate's.
        let a = try TLSFiles(), b = try TLSFiles()
        try FileManager.default.removeItem(atPath: a.directory + "/server-key.pem")
        try FileManager.default.copyItem(atPath: b.directory + "/server-key.pem", toPath: a.directory + "/server-key.pem")
        let e3 = try #require(throws: VolumeError.self) { try NBDTLSConfiguration(directory: a.directory) }
        #expect("\(e3)".contains("does not go with"))
    }

    @Test func loopbackAddresses() {
        for host in ["127.0.0.1", "127.3.4.5", "::1", "0:0::1", "localhost"] { #expect(isLoopbackAddress(host), "\(host)") }
        for host in ["0.0.0.0", "::", "10.1.2.3", "128.0.0.1", "::2", "example.org", ""] { #expect(!isLoopbackAddress(host), "\(host)") }
        #expect(throws: VolumeError.self) { try DaemonConfiguration.checkNBDListen("0.0.0.0", tlsDirectory: nil) }
        #expect(throws: VolumeError.self) { try DaemonConfiguration.checkNBDListen(nil, tlsDirectory: "/x") }
        #expect(throws: Never.self) { try DaemonConfiguration.checkNBDListen("10.0.0.1", tlsDirectory: "/x") }
        #expect(throws: Never.self) { try DaemonConfiguration.checkNBDListen("127.0.0.1", tlsDirectory: nil) }
    }
}
