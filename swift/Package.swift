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

let linuxOnly: TargetDependencyCondition? = .when(platforms: [.linux])
// MetalCompat checking mode: clang calls __sanitizer_cov_{load,store}N before every load and store of
// the instrumented kernel copies (CMetalCompat/checking.c defines the hooks).
let metalCompatCoverage = ["-fsanitize-coverage=func,trace-loads,trace-stores"]

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
                // Checking mode: the generated files compile each kernel twice, once with these hooks.
                .unsafeFlags(metalCompatCoverage, .when(platforms: [.linux])),
            ]
        ),
        .target(
            name: "MetalCompat",
            dependencies: ["CMetalCompat", "MetalKernelsCPU"]
        ),
        // The MetalCompat test kernels (Tests/MetalCompatTests/Kernels), compiled like MetalKernelsCPU.
        .target(
            name: "MetalCompatTestKernels",
            dependencies: ["CMetalCompat"],
            path: "Tests/MetalCompatTestKernels",
            cxxSettings: [
                .headerSearchPath("../../Sources/MetalKernelsCPU/msl"),
                .unsafeFlags(["-O2", "-std=c++17", "-Wno-unknown-attributes"]),
                .unsafeFlags(metalCompatCoverage, .when(platforms: [.linux])),
            ]
        ),
        .target(
            name: "MambaMetal",
            dependencies: [
                "CMambaCPU",
                .target(name: "MetalCompat", condition: linuxOnly),
            ],
            // Never unmapped by dlclose (a Deno worker that ends closes its handle): the Swift runtime keeps
            // pointers into a loaded library's metadata, and MetalCompat's helper threads outlive the handle.
            linkerSettings: [.unsafeFlags(["-Xlinker", "-z", "-Xlinker", "nodelete"], .when(platforms: [.linux]))]
        ),
        .testTarget(
            name: "MambaMetalTests",
            dependencies: ["MambaMetal"]
        ),
        // The CPU backend's kernels and forward pass against scalar references (CMambaCPU's testing hooks).
        .testTarget(
            name: "CMambaCPUTests",
            dependencies: ["CMambaCPU"]
        ),
        .testTarget(
            name: "MetalCompatTests",
            dependencies: [
                .target(name: "MetalCompat", condition: linuxOnly),
                .target(name: "MetalCompatTestKernels", condition: linuxOnly),
            ],
            exclude: ["Kernels"]
        ),
    ],
    cxxLanguageStandard: .cxx17
)

// The libFuzzer driver (swift/Fuzz): only when tools/fuzz.ts builds it, with MAMBA_FUZZ=1 and
// -sanitize=fuzzer, which provides main(); a plain build has nothing to link it with.
if Context.environment["MAMBA_FUZZ"] == "1" {
    package.targets.append(.executableTarget(
        name: "MambaFuzz", dependencies: ["MambaMetal"], path: "Fuzz/MambaFuzz",
        swiftSettings: [.unsafeFlags(["-parse-as-library"])]))
}
