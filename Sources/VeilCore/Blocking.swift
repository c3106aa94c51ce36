import Dispatch

/// Runs blocking work (a scan or verification of the audit log, a synchronous database transaction) on one of
/// Dispatch's threads rather than on one of the few cooperative threads every request shares: two such calls at
/// once must not stall every other request.
@discardableResult
public func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async { continuation.resume(with: Result { try body() }) }
    }
}
