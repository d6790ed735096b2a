// swift-tools-version: 6.1
//
// libFuzzer targets for ParallelCNN's file parsers. A separate package, so that a plain
// `swift build` / `swift test` of the root package never sees them (they only link with
// `-sanitize=fuzzer`). Build and run them with `scripts/fuzz [seconds]` (README.md, "Tests").

import PackageDescription

let package = Package(
    name: "ParallelCNNFuzz",
    dependencies: [
        .package(name: "ParallelCNN", path: "..")
    ],
    targets: [
        // MARK: Fuzz targets
        // Each is an executable whose entry point hands LLVMFuzzerTestOneInput to libFuzzer's
        // driver. (SwiftPM links an executable with `main` aliased to `<Module>_main`, so the
        // targets define that symbol rather than use libFuzzer's own main.)
        .executableTarget(name: "FuzzIDXRaw", dependencies: ["FuzzSupport", "_FuzzC"]),
        .executableTarget(name: "FuzzIDXGzip", dependencies: ["FuzzSupport", "_FuzzC"]),
        .executableTarget(
            name: "FuzzSafetensors",
            dependencies: [.product(name: "ParallelCNN", package: "ParallelCNN"), "_FuzzC"]
        ),

        // MARK: Helpers
        .target(name: "FuzzSupport", dependencies: [.product(name: "ParallelCNN", package: "ParallelCNN")]),
        .systemLibrary(name: "_FuzzC", pkgConfig: "zlib")
    ]
)
