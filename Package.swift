// swift-tools-version: 6.1
import Foundation
import PackageDescription

// Fuzz/run.sh builds this package's libraries with libFuzzer's coverage and AddressSanitizer
// (ZUMA_FUZZ_INSTRUMENT=1), so that mutations are steered by the code under test and its memory
// errors are caught, not only the harness's. Never set for a normal build.
let fuzzInstrument: [SwiftSetting] = ProcessInfo.processInfo.environment["ZUMA_FUZZ_INSTRUMENT"] == nil
    ? [] : [.unsafeFlags(["-sanitize=fuzzer,address"])]

let package = Package(
    name: "Zumastor",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "SnapStore", targets: ["SnapStore"]),
        .library(name: "VolumeServer", targets: ["VolumeServer"]),
        .library(name: "VolumeManager", targets: ["VolumeManager"]),
        .library(name: "Replication", targets: ["Replication"]),
        .library(name: "VolumeInterface", targets: ["VolumeInterface"]),
        .executable(name: "zumastor", targets: ["zumastor"]),
        .executable(name: "ddsnap", targets: ["ddsnap"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C shim: hardware CRC32C, block-device size ioctl, flock.
        .target(name: "CSupport"),
        // liblzma (Debian's liblzma-dev): compression of delta-stream records.
        .systemLibrary(name: "CLZMA", pkgConfig: "liblzma", providers: [.apt(["liblzma-dev"])]),
        .systemLibrary(name: "CZSTD", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // C bridge to libfuse3's low-level API (block files).
        .target(name: "CFuse", linkerSettings: [.linkedLibrary("fuse3")]),
        // The snapshot store: format, allocator, index, commits, check.
        .target(
            name: "SnapStore",
            dependencies: ["CSupport", .product(name: "HeapModule", package: "swift-collections")],
            swiftSettings: fuzzInstrument),
        // What a command can ask of a volume (VolumeAccess), its limits and errors: the server
        // implements it, delta streams use it, and neither depends on the other.
        .target(name: "VolumeInterface", dependencies: ["SnapStore"], swiftSettings: fuzzInstrument),
        // Test doubles that are real implementations (a crashable block device).
        .target(name: "SnapStoreTestKit", dependencies: ["SnapStore"]),
        // The per-volume server: control socket, FUSE block files and loop devices, NBD.
        .target(
            name: "VolumeServer",
            dependencies: [
                "SnapStore", "VolumeInterface", "CSupport", "CFuse",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
            ],
            swiftSettings: fuzzInstrument),
        // Volume lifecycle on one machine (zumastor's logic): configuration, servers, devices.
        .target(
            name: "VolumeManager",
            dependencies: ["SnapStore", "VolumeInterface", "VolumeServer", "Replication", "Transport", "CSupport", .product(name: "Logging", package: "swift-log"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "Metrics", package: "swift-metrics"),
                           .product(name: "Prometheus", package: "swift-prometheus")]),
        .executableTarget(
            name: "zumastor",
            dependencies: [
                "SnapStore", "VolumeInterface", "VolumeServer", "Replication", "VolumeManager", "Transport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        // Delta streams: changed chunks between two snapshots, encoded, checked and applied.
        .target(
            name: "Replication",
            dependencies: ["SnapStore", "VolumeInterface", "CLZMA", "CZSTD", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: fuzzInstrument),
        // Between hosts: this host's key and certificate, and TLS 1.3 with pinned peer keys.
        .target(
            name: "Transport",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .executableTarget(
            name: "ddsnap",
            dependencies: [
                "SnapStore", "VolumeInterface", "VolumeServer", "Replication", "Transport",
                .product(name: "NIOPosix", package: "swift-nio"),
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
        .testTarget(
            name: "VolumeManagerTests",
            dependencies: [
                "VolumeManager", "VolumeServer", "VolumeInterface", "SnapStore", "Replication", "Transport",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            exclude: ["Golden"]),
        .testTarget(
            name: "TransportTests",
            dependencies: ["Transport", .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "NIOSSL", package: "swift-nio-ssl")]),
        .testTarget(name: "ReplicationTests", dependencies: ["Replication", "SnapStore", "VolumeInterface", "VolumeServer"]),
        .testTarget(
            name: "VolumeServerTests",
            dependencies: [
                "VolumeServer", "VolumeInterface", "SnapStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]),
    ],
    swiftLanguageModes: [.v6]
)
