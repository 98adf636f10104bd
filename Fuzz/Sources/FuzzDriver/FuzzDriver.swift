// What every fuzz target's entry point does: make the target's seed corpus when its variable
// names a directory (VARIABLE=DIR), else hand over to libFuzzer's driver. SwiftPM links an
// executable's entry point as `<module>_main`, which each target defines with one call here.

import Foundation

@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<Int32>,
                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ test: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Int32

public typealias FuzzTest = @convention(c) (UnsafePointer<UInt8>, Int) -> Int32

public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                     corpus: (variable: String, make: (String) throws -> Void)? = nil, test: FuzzTest) -> Int32 {
    if let corpus, let directory = ProcessInfo.processInfo.environment[corpus.variable] {
        do {
            try corpus.make(directory)
            return 0
        } catch {
            print("cannot make the corpus in \(directory): \(error)")
            return 1
        }
    }
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, test)
}
