// This host's identity between hosts: a P-256 key pair and a self-signed certificate that
// carries its public key, kept in one directory (`/etc/zumastor` under ZUMASTOR_ROOT): the
// key readable by root only, both made once, on first use, under a lock so two commands that
// start together agree on one key. Peers pin the key's fingerprint; the certificate's names
// and dates only let TLS carry the key (a pinned key is trusted whatever they say).

import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import X509

public struct HostIdentity: Sendable {
    public let certificate: NIOSSLCertificate
    public let privateKey: NIOSSLPrivateKey
    public let fingerprint: KeyFingerprint

    public static let keyFile = "host-key.pem"
    public static let certificateFile = "host-certificate.pem"

    /// The identity kept in `directory`; made there first when it has none.
    public static func loadOrCreate(directory: String) throws -> HostIdentity {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let lockPath = directory + "/.host-key.lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw TransportError.identity("cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
        if !FileManager.default.fileExists(atPath: directory + "/" + keyFile) {
            try create(in: directory)
        }
        return try load(directory: directory)
    }

    /// The identity kept in `directory`; an error naming the file when it has none or a bad one.
    public static func load(directory: String) throws -> HostIdentity {
        let keyPath = directory + "/" + keyFile
        let certificatePath = directory + "/" + certificateFile
        let key: NIOSSLPrivateKey
        let publicKey: [UInt8]
        let certificate: NIOSSLCertificate
        do {
            let text = try String(contentsOfFile: keyPath, encoding: .utf8)
            key = try NIOSSLPrivateKey(bytes: Array(text.utf8), format: .pem)
            var serializer = DER.Serializer()
            try serializer.serialize(try Certificate.PrivateKey(pemEncoded: text).publicKey)
            publicKey = serializer.serializedBytes
        } catch {
            throw TransportError.identity("cannot read this host's key \(keyPath): \(error)")
        }
        do {
            guard let first = try NIOSSLCertificate.fromPEMFile(certificatePath).first else {
                throw TransportError.identity("no certificate in it")
            }
            certificate = first
        } catch {
            throw TransportError.identity("cannot read this host's certificate \(certificatePath): \(error)")
        }
        let fingerprint = try KeyFingerprint(certificate: certificate)
        guard KeyFingerprint(subjectPublicKeyInfo: publicKey) == fingerprint else {
            throw TransportError.identity("\(certificatePath) does not carry the key of \(keyPath); remove both to make a new identity (peers must then pin the new fingerprint)")
        }
        return HostIdentity(certificate: certificate, privateKey: key, fingerprint: fingerprint)
    }

    /// Makes a key pair and its certificate (valid for 100 years: the pin is what is trusted)
    /// and writes them, each through a temporary file renamed into place, the key first.
    private static func create(in directory: String) throws {
        let key = P256.Signing.PrivateKey()
        let signingKey = Certificate.PrivateKey(key)
        let name = try DistinguishedName { CommonName("zumastor host " + hostName()) }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: signingKey.publicKey,
            notValidBefore: now.addingTimeInterval(-86_400), notValidAfter: now.addingTimeInterval(100 * 365 * 86_400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions { Critical(BasicConstraints.notCertificateAuthority) },
            issuerPrivateKey: signingKey)
        try write(try signingKey.serializeAsPEM().pemString, to: directory + "/" + keyFile, mode: 0o600)
        try write(try certificate.serializeAsPEM().pemString, to: directory + "/" + certificateFile, mode: 0o644)
    }

    private static func write(_ text: String, to path: String, mode: mode_t) throws {
        let temporary = path + ".new"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw TransportError.identity("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw TransportError.identity("cannot write \(path): \(reason)")
        }
    }

    private static func hostName() -> String {
        var buffer = [UInt8](repeating: 0, count: 256)
        guard buffer.withUnsafeMutableBufferPointer({ gethostname($0.baseAddress!, 255) }) == 0 else { return "unknown" }
        return String(decoding: buffer.prefix { $0 != 0 }, as: UTF8.self)
    }
}
