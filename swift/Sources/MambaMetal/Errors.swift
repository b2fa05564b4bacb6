// Errors carried across the C ABI: each carries one MAMBA_ERR_* status (MambaStatus, generated from
// ../../include/mamba.h) and a message naming the problem.

/// An engine error: a status code for the C ABI and a message naming the problem.
struct MambaFailure: Error, CustomStringConvertible {
    let kind: MambaStatus
    let message: String

    var description: String { message }

    static func argument(_ m: String) -> MambaFailure { MambaFailure(kind: .argument, message: m) }
    static func io(_ m: String) -> MambaFailure { MambaFailure(kind: .io, message: m) }
    static func format(_ m: String) -> MambaFailure { MambaFailure(kind: .format, message: m) }
    static func shape(_ m: String) -> MambaFailure { MambaFailure(kind: .shape, message: m) }
    static func token(_ m: String) -> MambaFailure { MambaFailure(kind: .token, message: m) }
    static func state(_ m: String) -> MambaFailure { MambaFailure(kind: .state, message: m) }
    static func backend(_ m: String) -> MambaFailure { MambaFailure(kind: .backend, message: m) }
    static func unsupported(_ m: String) -> MambaFailure { MambaFailure(kind: .unsupported, message: m) }
    static func internalError(_ m: String) -> MambaFailure { MambaFailure(kind: .internal, message: m) }
}
