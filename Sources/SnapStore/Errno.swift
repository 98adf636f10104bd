#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// "No such file or directory (errno 2)".
public func describeErrno(_ code: Int32) -> String {
    if let text = strerror(code) { return "\(String(cString: text)) (errno \(code))" }
    return "errno \(code)"
}

/// The calling thread's errno.
@inline(__always) func currentErrno() -> Int32 { errno }
