// Feeds arbitrary bytes to the replication protocol's message decoder as a connection would
// carry them: messages one after another, each a u32 length, a type and a body. Each must
// either decode or throw LinkError, never crash or read out of bounds (AddressSanitizer is
// on); a message that decodes must encode to bytes that decode to the same message.

import FuzzDriver
import Replication

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var at = 0
    while bytes.count - at >= 5 {
        let length = Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24
        guard length <= LinkProtocol.bodyBytesMax, length <= bytes.count - at - 5 else { break }
        let body = Array(bytes[(at + 5)..<(at + 5 + length)])
        do {
            let m = try LinkMessage.decode(type: bytes[at + 4], body: body)
            let again = m.encoded()
            let back = try LinkMessage.decode(type: again[4], body: Array(again[5...]))
            guard back == m else { fatalError("\(m) encodes to bytes that decode to \(back)") }
        } catch is LinkError {
        } catch {
            fatalError("the decoder threw something other than LinkError: \(error)")
        }
        at += 5 + length
    }
    return 0
}

@_cdecl("link_fuzz_main")
public func linkFuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    fuzzMain(argc, argv) { fuzz($0, $1) }
}
