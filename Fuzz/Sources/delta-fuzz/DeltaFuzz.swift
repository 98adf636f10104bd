// Feeds arbitrary bytes to the delta-stream decoder, in pieces whose sizes the input's first
// byte chooses: it must either decode or throw DeltaError, never crash, hang or read out of
// bounds (AddressSanitizer is on). When the second byte is odd the harness re-seals the
// header (recomputes its SHA-256), so mutations reach the field checks behind the checksum.
// Records compressed against the base decode against zeros (the base of the corpus's
// incremental-zstd stream reads as zeros where its records are).

import FuzzDriver
import Crypto
import Replication

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 1 else { return 0 }
    var input = Array(UnsafeBufferPointer(start: data + 2, count: size - 2))
    if data[1] & 1 == 1 { reseal(&input) }
    let piece = Int(data[0]) + 1
    return input.withUnsafeBytes { decode($0, piece: piece) }
}

/// Recomputes the header checksum where the header's own length field puts it.
func reseal(_ bytes: inout [UInt8]) {
    guard bytes.count >= 248 else { return }
    let checks = Int(bytes[36]) | Int(bytes[37]) << 8 | Int(bytes[38]) << 16 | Int(bytes[39]) << 24
    guard checks <= 64 else { return }
    let end = 248 + 40 * checks
    guard bytes.count >= end + 32 else { return }
    bytes.replaceSubrange(end..<(end + 32), with: Array(SHA256.hash(data: bytes[0..<end])))
}

func decode(_ bytes: UnsafeRawBufferPointer, piece: Int) -> Int32 {
    let decoder = DeltaDecoder()
    decoder.reference = { _, into in into.initializeMemory(as: UInt8.self, repeating: 0) }
    do {
        var at = 0
        while at < bytes.count {
            let n = min(piece, bytes.count - at)
            try decoder.feed(UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)])) { _ in }
            at += n
        }
        try decoder.finish()
    } catch is DeltaError {
    } catch {
        fatalError("the decoder threw something other than DeltaError: \(error)")
    }
    return 0
}

@_cdecl("delta_fuzz_main")
public func deltaFuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    fuzzMain(argc, argv) { fuzz($0, $1) }
}
