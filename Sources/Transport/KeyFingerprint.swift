// A host's key as the other side pins it: SHA-256 of the public key's SubjectPublicKeyInfo
// (DER), written "SHA256:" and 43 characters of unpadded base64, as OpenSSH writes its own.

import Crypto
import Foundation
import NIOSSL

public struct KeyFingerprint: Hashable, Sendable, CustomStringConvertible {
    /// The 32 bytes of the digest.
    public let digest: [UInt8]

    static let prefix = "SHA256:"

    public init(subjectPublicKeyInfo spki: [UInt8]) {
        digest = Array(SHA256.hash(data: spki))
    }

    /// The fingerprint of a certificate's public key.
    public init(certificate: NIOSSLCertificate) throws {
        self.init(subjectPublicKeyInfo: try certificate.extractPublicKey().toSPKIBytes())
    }

    /// Reads "SHA256:<43 base64 characters>"; nil for anything else.
    public init?(parsing text: String) {
        guard text.hasPrefix(Self.prefix) else { return nil }
        var body = String(text.dropFirst(Self.prefix.count))
        guard body.count == 43, body.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "/") }) else { return nil }
        body += "="
        guard let bytes = Data(base64Encoded: body), bytes.count == 32 else { return nil }
        digest = Array(bytes)
    }

    public var description: String {
        var text = Data(digest).base64EncodedString()
        while text.hasSuffix("=") { text.removeLast() }
        return Self.prefix + text
    }
}
