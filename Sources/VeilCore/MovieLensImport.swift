import Audit
import FeatureStore
import Foundation
import Ingestion
import Policy
import Recommender

/// Imports MovieLens 100K through the same consent → token → minimize → seal path as the HTTP API.
public struct MovieLensImport: Sendable {
    let intake: IngestService
    let consent: ConsentService
    let policy: PolicySet
    let audit: any AuditTrail

    public struct ImportReport: Sendable, Equatable {
        public var items: Int
        public var subjects: Int
        public var ratings: Int
        public var rejected: Int
    }

    /// Each user's consent is recorded with method `import`, ratings become `feedback` events; audited once.
    public func run(
        ratings: String, items: String, users: String, namespace: String, progress: ProgressReporter = .silent
    ) async throws -> ImportReport {
        let principal = Principal(name: "import", role: Role.admin, namespace: namespace)
        let catalog = try Dataset.parseMovieLensItems(items).map { movie in
            let genres = movie.genres.map { Dataset.movieLensGenres[$0].lowercased() }
            return CatalogItem(
                id: "ml-\(movie.id)", title: movie.title, category: "movies/\(genres.first ?? "unknown")",
                attributes: movie.year > 0 ? ["decade": "\(movie.year / 10 * 10)"] : [:], tags: genres)
        }
        try await intake.upsertItems(catalog)
        let note = AuditNote()
        var subjects = 0
        var profiles: [[String: Any]] = []
        let userLines = users.split(separator: "\n")
        progress.phase("import", "consents", total: userLines.count)
        for (n, line) in userLines.enumerated() {
            progress.advance("import", "consents", done: n, total: userLines.count)
            let f = line.split(separator: "|", omittingEmptySubsequences: false)
            guard f.count >= 5 else { continue }
            let subject = "ml-user-\(f[0])"
            _ = try await consent.record(
                ConsentService.ConsentRequest(
                    subject: subject, purpose: CorePurpose.personalization.rawValue, granted: true, method: "import",
                    notice_version: policy.currentNotice, jurisdiction: "US", expires_at: nil, gpc: nil),
                principal: principal, gpcHeader: false, note: note)
            profiles.append([
                "id": "ml-profile-\(f[0])", "kind": "profile", "subject": subject, "timestamp": 880_000_000_000, "source": "movielens",
                "age": Int(f[1]) ?? 0, "gender": String(f[2]).lowercased(), "location": "US",
            ])
            subjects += 1
        }
        var accepted = 0, rejected = 0
        func send(_ events: [[String: Any]]) async throws {
            let body = Array(try JSONSerialization.data(withJSONObject: ["events": events]))
            let result = try await intake.ingest(body: body, principal: principal, gpcHeader: false, note: note)
            accepted += result.accepted
            rejected += result.rejected.count
        }
        for start in stride(from: 0, to: profiles.count, by: 500) { try await send(Array(profiles[start..<min(start + 500, profiles.count)])) }
        let profileCount = accepted
        var batch: [[String: Any]] = []
        let rows = try Dataset.parseRatings(ratings)
        progress.phase("import", "ratings", total: rows.count)
        for (n, row) in rows.enumerated() {
            batch.append([
                "id": "ml-\(row.user)-\(row.item)", "kind": "feedback", "subject": "ml-user-\(row.user)", "timestamp": row.timestamp * 1000,
                "source": "movielens", "item": "ml-\(row.item)", "signal": "rating", "value": Double(row.rating),
            ])
            if batch.count == 1000 {
                progress.advance("import", "ratings", done: n, total: rows.count)
                try await send(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
        if !batch.isEmpty { try await send(batch) }
        try await audit.append(
            AuditRecord(
                actor: "import", role: Role.admin, action: SystemAction.importMovieLens.rawValue, resource: "namespace \(namespace)",
                outcome: .allowed, reason: "\(subjects) subjects, \(accepted - profileCount) ratings"))
        return ImportReport(items: catalog.count, subjects: subjects, ratings: accepted - profileCount, rejected: rejected)
    }
}
