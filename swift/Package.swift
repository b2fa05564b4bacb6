// swift-tools-version:5.9
// MambaMetal: Mamba2 inference with a C ABI, for Deno (see ../README.md).
//
// Targets, bottom up:
//   CMambaCPU        C   portable CPU kernels (matvec, conv, SSM scan) and the thread pool
//   MambaMetal       Swift the engine, backends and the C ABI (product: libMambaMetal.so / .dylib)
import PackageDescription

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
            name: "MambaMetal",
            dependencies: ["CMambaCPU"]
        ),
        .testTarget(
            name: "MambaMetalTests",
            dependencies: ["MambaMetal"]
        ),
    ],
    cxxLanguageStandard: .cxx17
)
