import Synchronization

/// Places in a request where a test can wait, to force an interleaving that timing alone would rarely produce
/// (a withdrawal committing while a cache miss is in flight). Empty, each costs one uncontended lock.
public final class TestHooks: Sendable {
    private let cachePut = Mutex<(@Sendable () -> Void)?>(nil)

    public init() {}

    /// Runs `body` in a recommendation miss after its snapshot was read, before the list is cached.
    public func onBeforeCachePut(_ body: (@Sendable () -> Void)?) { cachePut.withLock { $0 = body } }

    func beforeCachePut() { cachePut.withLock { $0 }?() }
}
