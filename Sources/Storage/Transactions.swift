/// A database that runs units of work: each closure is one transaction over `Transaction`, the backend's type that
/// implements the repository protocols of the modules it stores. The transaction never escapes its closure.
///
/// Repository methods are synchronous inside a transaction, as GRDB's are: a batch of events is one transaction of
/// many small statements, and an `await` between each would cost more than the statements.
public protocol TransactionRunner<Transaction>: Sendable {
    associatedtype Transaction
    /// A read-only transaction (a snapshot).
    func read<T: Sendable>(_ body: @Sendable (Transaction) throws -> T) async throws -> T
    /// A write transaction: everything in `body` commits together or not at all.
    func write<T: Sendable>(_ body: @Sendable (Transaction) throws -> T) async throws -> T
    /// A read, blocking the calling thread (for command-line tools and work already off the cooperative pool).
    func readBlocking<T>(_ body: (Transaction) throws -> T) throws -> T
    /// A write, blocking the calling thread (for command-line tools and work already off the cooperative pool).
    func writeBlocking<T>(_ body: (Transaction) throws -> T) throws -> T
}
