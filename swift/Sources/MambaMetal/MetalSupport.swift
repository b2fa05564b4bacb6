// Entry to the Metal backend from the engine.

enum MetalSupport {
    /// True where Metal is Apple's GPU API rather than MetalCompat's CPU execution of it.
    static var isNativeGPU: Bool {
        #if canImport(Metal)
        return true
        #else
        return false
        #endif
    }

    static func makeBackend(weights: ModelWeights, options: EngineOptions) throws -> Backend {
        try MetalBackend(weights: weights, options: options)
    }
}
