// Errors reported the way Metal reports them: MTLCommandBufferError in commandBuffer.error,
// MTLLibraryError thrown from library and function creation. The message names the kernel and the
// problem (MetalCompat adds what a GPU would not: which barrier, which binding, which byte).
#if !canImport(Metal)
import Foundation

public struct MTLCommandBufferError: Error, CustomNSError, LocalizedError, CustomStringConvertible {
    public enum Code: UInt {
        case none = 0
        case `internal` = 1
        case timeout = 2
        case pageFault = 3
        case accessRevoked = 4
        case notPermitted = 7
        case outOfMemory = 8
        case invalidResource = 9
        case memoryless = 10
        case deviceRemoved = 11
        case stackOverflow = 12
    }

    public static var none: Code { .none }
    public static var `internal`: Code { .internal }
    public static var timeout: Code { .timeout }
    public static var pageFault: Code { .pageFault }
    public static var accessRevoked: Code { .accessRevoked }
    public static var notPermitted: Code { .notPermitted }
    public static var outOfMemory: Code { .outOfMemory }
    public static var invalidResource: Code { .invalidResource }
    public static var memoryless: Code { .memoryless }
    public static var deviceRemoved: Code { .deviceRemoved }
    public static var stackOverflow: Code { .stackOverflow }

    public let code: Code
    let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public static var errorDomain: String { "MTLCommandBufferErrorDomain" }
    public var errorCode: Int { Int(code.rawValue) }
    public var errorUserInfo: [String: Any] { [NSLocalizedDescriptionKey: message] }
    public var errorDescription: String? { message }
    public var description: String { "MTLCommandBufferError(\(code)): \(message)" }
}

public struct MTLLibraryError: Error, CustomNSError, LocalizedError, CustomStringConvertible {
    public enum Code: UInt {
        case unsupported = 1
        case `internal` = 2
        case compileFailure = 3
        case compileWarning = 4
        case functionNotFound = 5
        case fileNotFound = 6
    }

    public static var unsupported: Code { .unsupported }
    public static var `internal`: Code { .internal }
    public static var compileFailure: Code { .compileFailure }
    public static var compileWarning: Code { .compileWarning }
    public static var functionNotFound: Code { .functionNotFound }
    public static var fileNotFound: Code { .fileNotFound }

    public let code: Code
    let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public static var errorDomain: String { "MTLLibraryErrorDomain" }
    public var errorCode: Int { Int(code.rawValue) }
    public var errorUserInfo: [String: Any] { [NSLocalizedDescriptionKey: message] }
    public var errorDescription: String? { message }
    public var description: String { "MTLLibraryError(\(code)): \(message)" }
}

#endif
