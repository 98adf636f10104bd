// SHA-256 (swift-crypto) over pieces.

import Crypto

struct SHA256Hasher {
    private var hasher = SHA256()

    mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }

    func digest() -> [UInt8] { Array(hasher.finalize()) }
}
