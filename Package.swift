// swift-tools-version: 6.1
//
// ParallelCNN: the seed CNN of "Parallelizing Convolutional Neural Networks", trained on every
// kind of parallel hardware. See README.md for the build modes.

import PackageDescription

// Hot kernels want the host's vector width (AVX-512 here) and no bounds checks. Those are unsafe
// flags, which SwiftPM refuses in a package used as a remote dependency, so a dependent sets
// PCNN_PORTABLE=1 and gets a baseline-x86-64 build with the same results (the kernels never rely
// on fused multiply-add being fast or present for correctness).
let portable = Context.environment["PCNN_PORTABLE"] != nil
let speedFlags: [SwiftSetting] =
    portable
    ? []
    : [
        .unsafeFlags(["-Ounchecked", "-target-cpu", "native"], .when(configuration: .release))
    ]

let package = Package(
    name: "ParallelCNN",
    platforms: [.macOS(.v15)],

    // MARK: Public products
    products: [
        .library(name: "ParallelCNN", targets: ["ParallelCNN"]),
        .library(name: "ParallelCNNBench", targets: ["ParallelCNNBench"]),
        .executable(name: "pcnn", targets: ["pcnn"])
    ],

    // Optional system parts. `MPI` needs Open MPI (Debian: libopenmpi-dev openmpi-bin) and
    // enables `--engine mpi`: `swift build -c release --traits MPI`.
    traits: [
        .trait(name: "MPI", description: "The mpi engine, on Open MPI (libopenmpi-dev, pkg-config ompi-c).")
    ],

    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
    ],

    // MARK: Implementation targets
    targets: [
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(name: "_CPUVector"),
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]
        ),
        .target(
            name: "ParallelCNN",
            dependencies: [
                "CZlib", "_CPUVector",
                .target(name: "CMPI", condition: .when(traits: ["MPI"]))
            ],
            // The device kernels: one source for OpenCL and CUDA, compiled at run time.
            resources: [
                .embedInCode("Engines/GPU/Kernels/prelude.cu"),
                .embedInCode("Engines/GPU/Kernels/network.cu"),
                .embedInCode("Engines/GPU/Kernels/fused.cu"),
                .embedInCode("Engines/GPU/Kernels/layer.cu"),
                .embedInCode("Layers/Network/Network+Device.cu"),
                .embedInCode("Layers/Network/ParameterGradient+Device.cu"),
                .embedInCode("Layers/Conv/Conv+Device.cu"),
                .embedInCode("Layers/Subsample/Subsample+Device.cu"),
                .embedInCode("Layers/Pool/Pool+Device.cu"),
                .embedInCode("Layers/Dense/Dense+Device.cu"),
                .embedInCode("Layers/Activation/Activation+Device.cu")
            ],
            swiftSettings: speedFlags
        ),
        // The bench: the paper's tables, per-network rows, peak FLOP/s, charts. A program that
        // only trains does not link it.
        .target(
            name: "ParallelCNNBench",
            dependencies: ["ParallelCNN"],
            swiftSettings: speedFlags
        ),
        .executableTarget(
            name: "pcnn",
            dependencies: [
                "ParallelCNN",
                "ParallelCNNBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser")
            ],
            swiftSettings: speedFlags
        ),

        // MARK: Tests
        .testTarget(
            name: "ParallelCNNTests",
            dependencies: ["ParallelCNN", "ParallelCNNBench"],
            swiftSettings: speedFlags
        )
    ]
)
