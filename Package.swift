// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Zumastor",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "SnapStore", targets: ["SnapStore"]),
        .executable(name: "ddsnap", targets: ["ddsnap"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        // C shim: hardware CRC32C, block-device size ioctl, flock.
        .target(name: "CSupport"),
        // The snapshot store: format, allocator, index, commits, check.
        .target(
            name: "SnapStore",
            dependencies: ["CSupport", .product(name: "HeapModule", package: "swift-collections")]),
        // Test doubles that are real implementations (a crashable block device).
        .target(name: "SnapStoreTestKit", dependencies: ["SnapStore"]),
        .executableTarget(
            name: "ddsnap",
            dependencies: [
                "SnapStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Benchmarks: the curves of docs/BENCHMARKS.md (Benchmarks/run.sh runs them all).
        .executableTarget(
            name: "zuma-bench",
            dependencies: [
                "SnapStore", "CSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Benchmarks/ZumaBench"),
        .testTarget(
            name: "SnapStoreTests",
            dependencies: ["SnapStore", "SnapStoreTestKit"],
            exclude: ["Golden"]),
    ],
    swiftLanguageModes: [.v6]
)
