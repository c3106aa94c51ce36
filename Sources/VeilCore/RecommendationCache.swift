import Foundation
import Policy
import FeatureStore
import Recommender
import Serving
import Storage
import Synchronization

/// Recommendation responses cached per token with a TTL; dropped on a new event, a consent change, an
/// erasure and a model swap. Entries are kept rendered, so a hit only splices in its request id and subject.
///
/// Three promises, each with a test (`CacheTests`):
/// - **Never past consent.** An entry expires at the TTL or when the consent it was made under lapses, whichever
///   comes first.
/// - **No stale write after a drop.** A miss reads a ``Generation`` before its database snapshot and stores its list
///   only if no drop (a withdrawal, an event, an erasure) or clear happened for that token since: otherwise a miss
///   that read before a withdrawal committed could store a personalized list after the withdrawal dropped the old one.
/// - **Bounded.** At most `maxEntries` entries and `maxBytes` rendered bytes; the oldest go first.
///
/// It also remembers which canonical token a source token resolved to (identity links) for the same TTL, so a
/// hit needs no database read. A link made by this process clears that memory at once; one made by another
/// process (the command line) is seen when the entry expires, as are that process's events and consents.
public final class RecommendationCache: Sendable {
    /// What a list depends on besides the subject: model version, experiment arms and the query.
    struct Key: Hashable {
        var modelVersion: String
        var arms: [String]
        var k: Int
        var categories: [String]
        var exclude: [String]
        var session: [String]

        var approximateBytes: Int {
            modelVersion.utf8.count + (arms + categories + exclude + session).reduce(0) { $0 + $1.utf8.count + 16 } + 64
        }
    }
    struct Slot: Hashable {
        public var token: String
        var key: Key
    }
    struct Entry {
        let expires: Date
        let value: RenderedRecommendation
        let bytes: Int
        let order: UInt64
    }
    /// The token's stripe counter and the cache-wide epoch, read before a miss's snapshot.
    struct Generation: Equatable {
        fileprivate let stripe: Int
        fileprivate let value: UInt64
        fileprivate let epoch: UInt64
    }
    struct State {
        var entries: [Slot: Entry] = [:]
        var keysOfToken: [String: Set<Key>] = [:]
        /// Insertion order, oldest first from `head`; records whose entry was replaced or dropped are skipped.
        var order: [(order: UInt64, slot: Slot)] = []
        var head = 0
        var next: UInt64 = 0
        var bytes = 0
        /// Per-token generations, striped: a bump may also refuse a put of another token of the stripe (it is then
        /// just not cached), and memory stays fixed however many tokens pass.
        var stripes = [UInt64](repeating: 0, count: RecommendationCache.stripeCount)
        var epoch: UInt64 = 0
        /// Nothing is served or stored (the watch over other gateways' announcements is down).
        var fenced = false
    }
    static let stripeCount = 4096
    private let state = Mutex(State())
    private let links = Mutex<[String: (canonical: SubjectToken, expires: Date)]>([:])
    public let ttl: TimeInterval
    public let maxEntries: Int
    public let maxBytes: Int
    /// Bound on remembered links.
    static let linkCapacity = 100_000

    public init(ttl: TimeInterval = 30, maxEntries: Int = 50_000, maxBytes: Int = 64 << 20) {
        self.ttl = ttl
        self.maxEntries = max(1, maxEntries)
        self.maxBytes = max(1, maxBytes)
    }

    private static func stripe(_ token: String) -> Int {
        var hasher = Hasher()
        hasher.combine(token)
        return Int(UInt(bitPattern: hasher.finalize()) % UInt(stripeCount))
    }

    /// Read before the snapshot a list is computed from; ``put(token:key:value:now:validUntil:generation:)`` stores
    /// only while it is still current.
    func generation(token: String) -> Generation {
        let stripe = Self.stripe(token)
        return state.withLock { Generation(stripe: stripe, value: $0.stripes[stripe], epoch: $0.epoch) }
    }

    func get(token: String, key: Key, now: Date) -> RenderedRecommendation? {
        state.withLock { s in s.fenced ? nil : s.entries[Slot(token: token, key: key)].flatMap { $0.expires > now ? $0.value : nil } }
    }

    /// Stores a list until the TTL or `validUntil` (the consent's expiry), whichever is first, unless the token was
    /// dropped (or the cache cleared) since `generation` was read.
    func put(token: String, key: Key, value: RenderedRecommendation, now: Date, validUntil: Date? = nil, generation: Generation) {
        guard ttl > 0 else { return }
        var expires = now.addingTimeInterval(ttl)
        if let validUntil { expires = min(expires, validUntil) }
        guard expires > now else { return }
        let slot = Slot(token: token, key: key)
        let bytes = value.head.count + value.auditReason.utf8.count + token.utf8.count + key.approximateBytes
        guard bytes <= maxBytes else { return }
        state.withLock { s in
            guard !s.fenced, s.stripes[generation.stripe] == generation.value, s.epoch == generation.epoch else { return }
            if let old = s.entries[slot] { s.bytes -= old.bytes }
            let order = s.next
            s.next += 1
            s.entries[slot] = Entry(expires: expires, value: value, bytes: bytes, order: order)
            s.keysOfToken[token, default: []].insert(key)
            s.order.append((order, slot))
            s.bytes += bytes
            evict(&s, now: now)
        }
    }

    private func evict(_ s: inout State, now: Date) {
        while s.entries.count > maxEntries || s.bytes > maxBytes, s.head < s.order.count {
            let (order, slot) = s.order[s.head]
            s.head += 1
            if let entry = s.entries[slot], entry.order == order { remove(slot, &s) }
        }
        // Records of replaced or dropped entries pile up in `order`: compact once they are the majority.
        if s.head > 1024, s.head * 2 > s.order.count {
            s.order.removeFirst(s.head)
            s.head = 0
        }
        if s.order.count > 4 * max(s.entries.count, 1024) {
            s.order = s.order[s.head...].filter { s.entries[$0.slot]?.order == $0.order }
            s.head = 0
        }
    }

    private func remove(_ slot: Slot, _ s: inout State) {
        guard let entry = s.entries.removeValue(forKey: slot) else { return }
        s.bytes -= entry.bytes
        s.keysOfToken[slot.token]?.remove(slot.key)
        if s.keysOfToken[slot.token]?.isEmpty == true { s.keysOfToken[slot.token] = nil }
    }

    /// The canonical token `source` resolved to within the TTL, if remembered.
    func canonical(of source: SubjectToken, now: Date) -> SubjectToken? {
        guard !isFenced else { return nil }
        return links.withLock { $0[source.rawValue].flatMap { $0.expires > now ? $0.canonical : nil } }
    }

    func remember(source: SubjectToken, canonical: SubjectToken, now: Date) {
        guard ttl > 0, !isFenced else { return }
        links.withLock { all in
            if all.count > Self.linkCapacity { all.removeAll() }
            all[source.rawValue] = (canonical, now.addingTimeInterval(ttl))
        }
    }

    /// Forgets every remembered link (after a link, an unlink or an erasure).
    func forgetLinks() { links.withLock { $0.removeAll() } }

    /// Drops the token's lists and refuses any put that read its generation before this.
    public func drop(token: String) {
        let stripe = Self.stripe(token)
        state.withLock { s in
            s.stripes[stripe] &+= 1
            for key in s.keysOfToken[token] ?? [] { remove(Slot(token: token, key: key), &s) }
        }
    }

    public func clear() {
        state.withLock { s in
            let (epoch, fenced) = (s.epoch &+ 1, s.fenced)
            s = State()
            s.epoch = epoch
            s.fenced = fenced
        }
        forgetLinks()
    }

    /// While fenced, every lookup misses and nothing is stored: lists are computed from the database, which other
    /// gateways' changes have reached.
    public func fence(_ on: Bool) {
        state.withLock { $0.fenced = on }
        if on { forgetLinks() }
    }

    private var isFenced: Bool { state.withLock { $0.fenced } }

    public func contains(token: String) -> Bool { state.withLock { $0.keysOfToken[token] != nil } }

    /// Entries and rendered bytes held now.
    public var usage: (entries: Int, bytes: Int) { state.withLock { ($0.entries.count, $0.bytes) } }
}
