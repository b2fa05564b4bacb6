// Foundation's autoreleasepool, which Metal code on Apple platforms wraps per-frame work in (Metal
// returns autoreleased objects). Linux has no Objective-C runtime, so the pool is just the body.
#if !canImport(Metal)
public func autoreleasepool<Result>(invoking body: () throws -> Result) rethrows -> Result {
    try body()
}
#endif
