import Audit
import Consent
import Ingestion
import Policy

/// Benchmark hooks: the paths of `POST /v1/consents` and `POST /v1/events` without HTTP, for `veil bench`.
extension VeilService {
    /// Creates an app principal and records consents for a generated shop (7 of 8 subjects opt in).
    public func benchPrepare(shop: SampleShop) async throws -> Principal {
        let principal = Principal(name: "bench-app", role: "app", namespace: "default")
        let note = AuditNote()
        for (n, user) in shop.users.enumerated() {
            let request = ConsentService.ConsentRequest(
                subject: user.id, purpose: CorePurpose.personalization.rawValue, granted: n % 8 != 7, method: "banner",
                notice_version: "2026-01", jurisdiction: "EU", expires_at: nil, gpc: nil)
            _ = try await consent.record(request, principal: principal, gpcHeader: false, note: note)
        }
        return principal
    }

    /// One batch through the same path as `POST /v1/events`, including its audit entry.
    public func benchIngest(body: [UInt8], principal: Principal) async throws -> Int {
        let note = AuditNote()
        let result = try await intake.ingest(body: body, principal: principal, gpcHeader: false, note: note)
        try await audit.append(
            AuditRecord(
                actor: principal.name, role: principal.role, action: Action.eventsWrite.rawValue, resource: "POST /v1/events",
                purpose: CorePurpose.personalization.rawValue, outcome: .allowed, reason: note.snapshot.reason, requestID: "bench"))
        return result.accepted
    }
}
