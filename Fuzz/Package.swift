// swift-tools-version: 6.1
// libFuzzer targets (a package of its own: libFuzzer supplies main) for every decoder of
// outside input: delta streams, the replication protocol's messages, the store's open path,
// the NBD handshake and requests, and the control socket's frames and messages.
// Build and run: Fuzz/run.sh [SECONDS] (or --long). The NBD and control targets reach the
// server's internal types (@testable), so the build adds -enable-testing.
import Foundation
import PackageDescription

// The parent package's identity is its directory's name (a clone may be named anything).
let parent = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()

let fuzzer: [SwiftSetting] = [.unsafeFlags(["-parse-as-library", "-sanitize=fuzzer,address"])]
let fuzzerLink: [LinkerSetting] = [.unsafeFlags(["-sanitize=fuzzer,address"])]

let package = Package(
    name: "ZumastorFuzz",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
    ],
    targets: [
        .target(name: "FuzzDriver"),
        .executableTarget(
            name: "delta-fuzz",
            dependencies: ["FuzzDriver", .product(name: "Replication", package: parent), .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: fuzzer, linkerSettings: fuzzerLink),
        .executableTarget(
            name: "link-fuzz",
            dependencies: ["FuzzDriver", .product(name: "Replication", package: parent)],
            swiftSettings: fuzzer, linkerSettings: fuzzerLink),
        .executableTarget(
            name: "store-fuzz",
            dependencies: ["FuzzDriver", .product(name: "SnapStore", package: parent)],
            swiftSettings: fuzzer, linkerSettings: fuzzerLink),
        .executableTarget(
            name: "nbd-fuzz",
            dependencies: ["FuzzDriver", 
                .product(name: "VolumeServer", package: parent), .product(name: "SnapStore", package: parent),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"), .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: fuzzer, linkerSettings: fuzzerLink),
        .executableTarget(
            name: "control-fuzz",
            dependencies: ["FuzzDriver", .product(name: "VolumeServer", package: parent), .product(name: "VolumeInterface", package: parent)],
            swiftSettings: fuzzer, linkerSettings: fuzzerLink),
    ],
    swiftLanguageModes: [.v6]
)
