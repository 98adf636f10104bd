// swift-tools-version: 6.1
// libFuzzer target for the delta-stream decoder (a package of its own: libFuzzer supplies
// main). Build and run: Fuzz/run.sh [SECONDS].
import Foundation
import PackageDescription

// The parent package's identity is its directory's name (a clone may be named anything).
let parent = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()

let package = Package(
    name: "ZumastorFuzz",
    dependencies: [.package(path: ".."), .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3")],
    targets: [
        .executableTarget(
            name: "delta-fuzz",
            dependencies: [.product(name: "Replication", package: parent), .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: [.unsafeFlags(["-parse-as-library", "-sanitize=fuzzer,address"])],
            linkerSettings: [.unsafeFlags(["-sanitize=fuzzer,address"])]),
    ],
    swiftLanguageModes: [.v6]
)
