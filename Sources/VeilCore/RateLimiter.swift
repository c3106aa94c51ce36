import Foundation
import Policy
import Synchronization

/// Requests per second and burst allowed for one role.
public struct RateLimit: Sendable, Equatable {
    public var perSecond: Double
    public var burst: Double

    public init(perSecond: Double, burst: Double) {
        self.perSecond = perSecond
        self.burst = burst
    }
}

/// A token bucket: pure state over an injected time, so it is tested without sleeping.
struct TokenBucket: Sendable {
    var tokens: Double
    var updated: TimeInterval

    /// Takes one token at `now`; when none is left, returns the seconds until one will be.
    mutating func take(_ limit: RateLimit, now: TimeInterval) -> TimeInterval? {
        tokens = min(limit.burst, tokens + max(0, now - updated) * limit.perSecond)
        updated = now
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        return (1 - tokens) / max(limit.perSecond, 1e-9)
    }
}

/// Per-principal token buckets, configured per role. Roles without a limit are not limited.
public final class RateLimiter: Sendable {
    public let limits: [String: RateLimit]
    private let buckets = Mutex<[String: TokenBucket]>([:])

    public init(limits: [String: RateLimit]) { self.limits = limits }

    /// Generous defaults: they stop a runaway client, not a busy shop.
    public static let defaults: [String: RateLimit] = [
        "app": RateLimit(perSecond: 20_000, burst: 40_000),
        "recommendation-client": RateLimit(perSecond: 50_000, burst: 100_000),
        "compliance-officer": RateLimit(perSecond: 200, burst: 400),
        Role.admin: RateLimit(perSecond: 200, burst: 400),
        // A witness polls the newest head every minute or so.
        "witness": RateLimit(perSecond: 1, burst: 10),
        // Per browser key and client address: a page sends its consent and a few event batches.
        Role.browser: RateLimit(perSecond: 2, burst: 30),
    ]

    /// The limit of a role the configuration names no limit for (a role added to Policies/roles.yaml later):
    /// bounded, so that no role is unlimited by omission.
    public static let unlisted = RateLimit(perSecond: 100, burst: 200)

    static let maxBuckets = 100_000

    /// nil when `principal` may proceed; otherwise the seconds to wait.
    func check(principal: String, role: String, now: TimeInterval) -> TimeInterval? {
        let limit = limits[role] ?? Self.unlisted
        return buckets.withLock { table in
            // Browser keys have a bucket per client address: forget the idle ones (a full bucket is a new one), and
            // all of them if that is not enough, so that a sweep comes at most once per `maxBuckets` new clients.
            if table.count >= Self.maxBuckets {
                table = table.filter { now - $0.value.updated < 60 }
                if table.count >= Self.maxBuckets / 2 { table.removeAll(keepingCapacity: true) }
            }
            var bucket = table[principal] ?? TokenBucket(tokens: limit.burst, updated: now)
            let wait = bucket.take(limit, now: now)
            table[principal] = bucket
            return wait
        }
    }
}
