// Entry to the Metal backend (filled in by the Metal decode work).

enum MetalSupport {
    /// True where Metal is Apple's real GPU API rather than MetalCompat's CPU emulation.
    static var isNativeGPU: Bool {
        #if canImport(Metal)
        return true
        #else
        return false
        #endif
    }

    static func makeBackend(weights: ModelWeights, options: EngineOptions) throws -> Backend {
        throw MambaFailure.backend("the Metal backend is not built yet")
    }
}
