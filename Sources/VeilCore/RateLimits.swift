import Foundation

extension VeilService {
    /// Takes one request from the bucket `bucket` of `role`'s limit; past it, a 429 with `Retry-After`, noted for the
    /// audit entry. The API and the console both go through here.
    public func enforceRateLimit(bucket: String, role: String, note: AuditNote) throws {
        guard let wait = rateLimiter.check(principal: bucket, role: role, now: now().timeIntervalSince1970) else { return }
        note.update { $0.reason = "rate limit of role \(role)" }
        throw CoreError(
            .rateLimited, "rate_limited", "too many requests for this principal; retry after the Retry-After seconds",
            retryAfter: Int(wait.rounded(.up)))
    }
}
