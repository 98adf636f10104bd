// TLS for NBD over TCP (NBD_OPT_STARTTLS), with X.509 certificates kept as nbdkit and
// qemu-nbd keep them: one directory holding `ca-cert.pem` (the authority clients' and this
// server's certificates come from), `server-cert.pem` and `server-key.pem`. TLS is mutual:
// a client must show a certificate that authority signed, so the key a client holds is what
// lets it read and write the volume. The key must be root's alone (like ssh's host keys).
// The files are read once, when the server starts.

import Foundation
import NIOSSL
import SnapStore
import VolumeInterface

public struct NBDTLSConfiguration: Sendable {
    public static let authorityFile = "ca-cert.pem"
    public static let certificateFile = "server-cert.pem"
    public static let keyFile = "server-key.pem"

    let context: NIOSSLContext
    /// The directory it came from (log lines).
    public let directory: String

    /// Reads the directory's three files; an error naming the file that is missing, unreadable,
    /// readable by others than its owner, or not PEM of the right kind.
    public init(directory: String) throws {
        self.directory = directory
        let authority = directory + "/" + Self.authorityFile
        let certificate = directory + "/" + Self.certificateFile
        let key = directory + "/" + Self.keyFile
        for path in [authority, certificate, key] where !FileManager.default.isReadableFile(atPath: path) {
            throw VolumeError.invalidArgument("NBD TLS: cannot read \(path) (the directory needs \(Self.authorityFile), \(Self.certificateFile) and \(Self.keyFile))")
        }
        var info = stat()
        guard stat(key, &info) == 0 else { throw VolumeError.system("NBD TLS: cannot stat \(key): \(describeErrno(errno))") }
        guard info.st_mode & 0o077 == 0 else {
            throw VolumeError.invalidArgument("NBD TLS: \(key) is readable by others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600 it")
        }
        let chain: [NIOSSLCertificate]
        let authorities: [NIOSSLCertificate]
        let privateKey: NIOSSLPrivateKey
        do { chain = try NIOSSLCertificate.fromPEMFile(certificate) } catch {
            throw VolumeError.invalidArgument("NBD TLS: \(certificate) is not a PEM certificate: \(error)")
        }
        do { authorities = try NIOSSLCertificate.fromPEMFile(authority) } catch {
            throw VolumeError.invalidArgument("NBD TLS: \(authority) is not a PEM certificate: \(error)")
        }
        do { privateKey = try NIOSSLPrivateKey(file: key, format: .pem) } catch {
            throw VolumeError.invalidArgument("NBD TLS: \(key) is not a PEM private key: \(error)")
        }
        guard !chain.isEmpty, !authorities.isEmpty else {
            throw VolumeError.invalidArgument("NBD TLS: \(chain.isEmpty ? certificate : authority) holds no certificate")
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                           privateKey: .privateKey(privateKey))
        tls.minimumTLSVersion = .tlsv12
        tls.trustRoots = .certificates(authorities)
        // Clients must show a certificate of this authority; a client has no name to check.
        tls.certificateVerification = .noHostnameVerification
        tls.sendCANameList = true
        do {
            context = try NIOSSLContext(configuration: tls)
        } catch {
            throw VolumeError.invalidArgument("NBD TLS: \(key) does not go with \(certificate), or they cannot be used: \(error)")
        }
    }

    func serverHandler() -> NIOSSLServerHandler { NIOSSLServerHandler(context: context) }
}

/// Whether an address to listen on is reachable only from this host: 127.0.0.0/8, ::1 or
/// `localhost`. Names other than `localhost` count as reachable from elsewhere.
public func isLoopbackAddress(_ host: String) -> Bool {
    if host == "localhost" { return true }
    var v4 = in_addr()
    if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
    var v6 = in6_addr()
    if inet_pton(AF_INET6, host, &v6) == 1 {
        return withUnsafeBytes(of: &v6) { $0.elementsEqual([UInt8](repeating: 0, count: 15) + [1]) }
    }
    return false
}
