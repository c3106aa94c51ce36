import Synchronization

/// Places in a request where a test can wait, to force an interleaving that timing alone would rarely produce
/// (a withdrawal committing while a cache miss is in flight). Empty, each costs one uncontended lock.
public final class TestHooks: Sendable {
    private let cachePut = Mutex<(@Sendable () -> Void)?>(nil)
    private let trainingSnapshot = Mutex<(@Sendable () -> Void)?>(nil)

    public init() {}

    /// Runs `body` in a recommendation miss after its snapshot was read, before the list is cached.
    public func onBeforeCachePut(_ body: (@Sendable () -> Void)?) { cachePut.withLock { $0 = body } }

    func beforeCachePut() { cachePut.withLock { $0 }?() }

    /// Runs `body` in a retrain after its snapshot was read, before the model is installed.
    public func onTrainingSnapshotRead(_ body: (@Sendable () -> Void)?) { trainingSnapshot.withLock { $0 = body } }

    func trainingSnapshotRead() { trainingSnapshot.withLock { $0 }?() }
}
