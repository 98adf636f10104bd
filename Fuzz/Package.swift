// swift-tools-version: 6.1
// libFuzzer targets for the delta-stream decoder and the replication protocol's messages (a
// package of its own: libFuzzer supplies main). Build and run: Fuzz/run.sh [SECONDS].
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
        .executableTarget(
            name: "link-fuzz",
            dependencies: [.product(name: "Replication", package: parent)],
            swiftSettings: [.unsafeFlags(["-parse-as-library", "-sanitize=fuzzer,address"])],
            linkerSettings: [.unsafeFlags(["-sanitize=fuzzer,address"])]),
    ],
    swiftLanguageModes: [.v6]
)
