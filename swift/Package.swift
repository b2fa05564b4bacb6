// swift-tools-version:5.9
// MambaMetal: Mamba2 inference with a C ABI, for Deno (see ../README.md).
//
// Targets, bottom up:
//   CMambaCPU        C   portable CPU kernels (matvec, conv, SSM scan) and the thread pool
//   CMetalCompat     C   Linux only: fibers, threadgroup scheduling, SIMD-group collectives, counters
//   MetalKernelsCPU  C++ Linux only: ../metal/*.metal compiled as C++ plus generated binding tables
//   MetalCompat      Swift Linux only: the subset of Apple's Metal API the backend uses
//   MambaMetal       Swift the engine, backends and the C ABI (product: libMambaMetal.so / .dylib)
import PackageDescription

let linuxOnly = TargetDependencyCondition.when(platforms: [.linux])

let package = Package(
    name: "MambaMetal",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "MambaMetal", type: .dynamic, targets: ["MambaMetal"]),
    ],
    targets: [
        .target(
            name: "CMambaCPU",
            cSettings: [.unsafeFlags(["-O3", "-fno-math-errno", "-ffp-contract=fast"])]
        ),
        .target(
            name: "CMetalCompat",
            cSettings: [.unsafeFlags(["-O2"])]
        ),
        .target(
            name: "MetalKernelsCPU",
            dependencies: ["CMetalCompat"],
            cxxSettings: [
                .headerSearchPath("msl"),
                .unsafeFlags(["-O2", "-std=c++17", "-Wno-unknown-attributes"]),
            ]
        ),
        .target(
            name: "MetalCompat",
            dependencies: ["CMetalCompat", "MetalKernelsCPU"]
        ),
        .target(
            name: "MambaMetal",
            dependencies: [
                "CMambaCPU",
                .target(name: "MetalCompat", condition: linuxOnly),
            ]
        ),
        .testTarget(
            name: "MetalCompatTests",
            dependencies: ["MetalCompat"]
        ),
        .testTarget(
            name: "MambaMetalTests",
            dependencies: ["MambaMetal"]
        ),
    ],
    cxxLanguageStandard: .cxx17
)
