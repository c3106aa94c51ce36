import Audit
import Consent
import FeatureStore
import Foundation
import VeilCore
import HTTPTypes
import Ingestion
import Hummingbird
import Policy

/// The console's pages. Each calls the service the API route it stands for calls.
enum ConsolePages {
    static let auditLog: Console.SignedInPage = { call, session in
        // A search comes as a form (POST); its later pages as links that name the person by token only.
        let text = call.field
        guard call.request.method == .post || text("subject") == nil else { throw ConsoleRequest.idInURL }
        var q = AuditQuery(limit: 50)
        q.actor = text("actor")
        q.action = text("action")
        if let outcome = text("outcome") {
            guard let value = AuditOutcome(rawValue: outcome) else { throw invalid("outcome is one of allowed, denied, rejected, error") }
            q.outcome = value
        }
        q.from = try text("from").map { try time($0, endOfDay: false) }
        q.to = try text("to").map { try time($0, endOfDay: true) }
        q.after =
            try text("cursor").map {
                guard let v = Int64($0), v >= 0 else { throw invalid("the page cursor is a number") }; return v
            } ?? 0
        let subject = text("subject")
        if let subject {
            // Tokenized here; the id itself is shown back only in this officer's search box and never stored.
            q.subjectToken = try await call.service.auditToken(for: subject, principal: session.principal)
        } else if let token = text("subject_token") {
            guard token.utf8.count == 32, token.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
                throw invalid("subject_token is 32 hex digits")
            }
            q.subjectToken = token
        }
        if let token = q.subjectToken { call.context.audit.update { $0.subjectToken = token } }
        let query = q
        // On a shared database every gateway's log (each entry naming it); details open for this gateway's own.
        let (entries, cursor) = try await call.service.queryAuditLog(query)
        let own = call.service.sharedAudit?.log
        var next: String?
        if let last = cursor {
            var items = [URLQueryItem(name: "cursor", value: String(last))]
            if let token = query.subjectToken { items.append(URLQueryItem(name: "subject_token", value: token)) }
            for name in ["actor", "action", "outcome", "from", "to"] {
                if let v = text(name) { items.append(URLQueryItem(name: name, value: v)) }
            }
            var c = URLComponents()
            c.queryItems = items
            next = "/console/audit?" + (c.percentEncodedQuery ?? "")
        }
        var values = call.base(
            "Access log",
            [
                "subject": subject ?? "", "actor": q.actor ?? "", "action": q.action ?? "", "from": text("from") ?? "", "to": text("to") ?? "",
                "outcomes": AuditOutcome.allCases.map { ["value": $0.rawValue, "selected": $0 == q.outcome] },
                "entries": entries.map { logged in
                    var values = row(logged.entry)
                    values["log_label"] = logged.log.map { $0 + " " } ?? ""
                    values["link"] = logged.log == own
                    return values
                }, "none": entries.isEmpty,
            ])
        if let next { values["next"] = next }
        return Console.render("audit", values)
    }

    static let auditEntry: Console.SignedInPage = { call, session in
        guard let seq = call.context.parameters.get("seq").flatMap({ Int64($0) }), seq >= 1 else { throw invalid("no such entry") }
        let audit = call.service.audit
        guard let entry = try await offThePool({ try audit.query(AuditQuery(after: seq - 1, limit: 1)) }).first, entry.sequence == seq else {
            throw ConsoleError(status: .notFound, title: "No such entry", message: "The log has no entry \(seq).")
        }
        var values = row(entry)
        values["previous_hash"] = entry.previousHash
        values["hash"] = entry.hash
        values["request_id"] = entry.record.requestID
        values["subject_token"] = entry.record.subjectToken ?? "none"
        values["purpose"] = entry.record.purpose ?? "none"
        if let proof = try? await offThePool({ try audit.inclusionProof(sequence: seq, treeSize: nil) }) {
            values["proof"] = ["tree_size": proof.treeSize, "leaf_hash": proof.leafHash, "hashes": proof.hashes, "root": proof.checkpoint.rootHash]
        }
        return Console.render("entry", call.base("Entry \(seq)", values))
    }

    static let integrity: Console.SignedInPage = { call, session in
        let verification = try await call.service.verifyAuditLog()
        // On a shared database the verdict covers every gateway's log, and names the ones that fail.
        let failing = (verification.logs ?? []).filter { !$0.intact }.map {
            "log \($0.log ?? "?") fails at entry \($0.firstBadSequence ?? 0): \($0.reason ?? "")"
        }
        // Every failure of this gateway's own file: damage named at entry 1 must not hide a rewritten entry further on.
        let own = (verification.failures ?? []).map { "entry \($0.sequence): \($0.reason)" }
        let head = try await call.service.newestAuditHead()
        return Console.render(
            "integrity",
            call.base(
                "Integrity",
                [
                    "intact": verification.allLogsIntact ?? verification.intact, "entries": verification.entries,
                    "heads": verification.checkpoints, "signed_through": verification.signedThrough,
                    "reason": (own + failing).joined(separator: "; "), "proves": verification.proves,
                    "head": head?.note ?? "", "has_head": head != nil,
                ]))
    }

    /// The newest signed head as a file, for the officer to keep away from the gateway.
    static let downloadHead: Console.SignedInPage = { call, session in
        guard let head = try await call.service.audit.checkpoint(minimumInterval: .seconds(1)) else {
            throw ConsoleError(status: .notFound, title: "No signed head", message: "The log has signed no tree head yet.")
        }
        var headers: HTTPFields = [
            .contentType: "text/plain; charset=utf-8", .contentDisposition: "attachment; filename=\"veil-head-\(head.size).txt\"",
        ]
        Console.secured(&headers)
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: head.note)))
    }

    static let subject: Console.SignedInPage = { call, session in
        guard call.request.method == .post else {
            guard call.field("subject") == nil else { throw ConsoleRequest.idInURL }
            return Console.render("subject", call.base("A person's record", ["searched": false]))
        }
        let subject = try field(call, "subject")
        let note = call.context.audit
        let state = try await call.service.consent.state(subject: subject, principal: session.principal, note: note)
        let history = try await call.service.consent.history(subject: subject, principal: session.principal, note: note)
        let tokens = try await call.service.subjects.personTokens(subject: subject, principal: session.principal, note: note)
        let purposes = (state["purposes"] as? [String: [String: Any]] ?? [:]).sorted { $0.key < $1.key }.map { name, decision in
            ["purpose": name, "allowed": decision["allowed"] as? Bool ?? false, "reason": decision["reason"] as? String ?? ""] as [String: Any]
        }
        let events = history.map { r -> [String: Any] in
            [
                "seq": r.sequence, "at": iso(r.event.at), "purpose": r.event.purpose, "granted": r.event.granted, "method": r.event.method.rawValue,
                "notice": r.event.noticeVersion, "jurisdiction": r.event.jurisdiction, "gpc_conflict": r.event.gpcConflict == true,
                "source": r.event.sourceApp,
            ]
        }
        return Console.render(
            "subject",
            call.base(
                "A person's record",
                [
                    "searched": true, "subject": subject, "purposes": purposes, "history": events, "no_history": events.isEmpty,
                    "tokens": tokens.map { "\($0)" },
                ]))
    }

    static let export: Console.SignedInPage = { call, session in
        let subject = try field(call, "subject")
        let recipient = call.form["recipient"]?.trimmingCharacters(in: .whitespaces) ?? ""
        let sealTo =
            try recipient.isEmpty
            ? nil
            : RecipientKey(hex: recipient)
                ?? {
                    throw invalid("the requester's key is 64 hex digits (X25519)")
                }()
        let export = try await call.service.rights.export(subject: subject, principal: session.principal, note: call.context.audit)
        var data = try API.encoder.encode(export)
        if let key = sealTo {
            data = try JSONSerialization.data(withJSONObject: [
                "sealed": try call.service.seal(data, to: key).base64EncodedString(), "algorithm": "crypto_box_seal",
            ])
        }
        // Kept in this session for one download from the result page, which shows what was done and its audit entry.
        let what =
            "Exported: \(export.consents.count) consent events, \(export.interactions.count) interactions"
            + (sealTo == nil ? "." : ", sealed to the requester's key.")
        call.sessions.note(session.id, requestID: call.context.requestID, result: what, download: data)
        return Console.redirect("/console/result?request=\(call.context.requestID)")
    }

    /// The export a request of this session made, once.
    static let download: Console.SignedInPage = { call, session in
        guard let id = call.field("request"), let data = call.sessions.takeDownload(session.id, requestID: id) else {
            throw ConsoleError(status: .notFound, title: "Nothing to download", message: "This export was downloaded already or never made here.")
        }
        call.context.audit.update { $0.reason = "download of the export made by request \(id)" }
        var headers: HTTPFields = [.contentType: "application/json", .contentDisposition: "attachment; filename=\"veil-export.json\""]
        Console.secured(&headers)
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static let erase: Console.SignedInPage = { call, session in
        let subject = try field(call, "subject")
        // Typed again, exactly: an erasure cannot be undone.
        guard call.form["confirm"] == subject else {
            throw ConsoleError(
                status: .unprocessableContent, title: "Not erased", message: "To erase, type the subject id again, exactly, in the confirmation box.")
        }
        let outcome = try await call.service.rights.erase(subject: subject, principal: session.principal, note: call.context.audit)
        let rows = outcome["rows_deleted"] as? Int ?? 0
        call.sessions.note(session.id, requestID: call.context.requestID, result: "Erased: \(rows) rows shredded.")
        return Console.redirect("/console/result?request=\(call.context.requestID)")
    }

    /// What a data-subject request did, and the audit entry that records it.
    static let result: Console.SignedInPage = { call, session in
        guard let id = call.request.uri.queryParameters["request"].map(String.init), let text = session.results[id] else {
            throw ConsoleError(status: .notFound, title: "No such request", message: "This session made no such request.")
        }
        let actor = session.principal.name
        let count = call.service.audit.count
        // The request came moments ago: its entry is among the newest (pages of this officer's entries from there).
        let entry = try await offThePool { () -> AuditEntry? in
            var q = AuditQuery(actor: actor, after: max(0, count - 5_000), limit: 1000)
            while true {
                let page = try call.service.audit.query(q)
                if let hit = page.first(where: { $0.record.requestID == id }) { return hit }
                guard page.count == q.limit, let last = page.last else { return nil }
                q.after = last.sequence
            }
        }
        return Console.render(
            "result",
            call.base(
                "Done",
                [
                    "outcome": text, "entry": entry?.sequence ?? 0, "has_entry": entry != nil, "request": id,
                    "download": session.downloads[id] != nil,
                ]))
    }

    static let operations: Console.SignedInPage = { call, session in
        let report = try await call.service.dataQuality.report()
        let days = try await call.service.dataQuality.days(7)
        let today = Int64(call.service.now().timeIntervalSince1970) / 86_400
        let labels = (0..<7).map { today - 6 + Int64($0) }
        let sources = report.sources.map { s -> [String: Any] in
            let perDay = Dictionary(days.filter { $0.source == s.source }.map { ($0.day, $0) }, uniquingKeysWith: { a, _ in a })
            return [
                "source": s.source, "events": s.events, "freshness": s.freshnessSeconds.map { "\(Int($0)) s ago" } ?? "never",
                "completeness": percent(s.completeness), "reject": percent(s.rejectRate), "duplicates": percent(s.duplicateRate),
                "outliers": s.outliers, "problems": s.problems.joined(separator: "; "), "healthy": s.problems.isEmpty,
                "chart": Charts.bars(
                    title: "Events per day from \(s.source)", labels: labels.map(dayLabel), values: labels.map { Double(perDay[$0]?.events ?? 0) }),
            ]
        }
        // Denied requests per day over the week, from the log's index (at most 20,000 counted).
        let from = (today - 6) * 86_400_000
        let denied = try await offThePool { () -> [Int64: Int] in
            var counts: [Int64: Int] = [:]
            var q = AuditQuery(outcome: .denied, from: from, limit: 1000)
            for _ in 0..<20 {
                let page = try call.service.audit.query(q)
                for e in page { counts[e.at / 86_400_000, default: 0] += 1 }
                guard page.count == q.limit, let last = page.last else { break }
                q.after = last.sequence
            }
            return counts
        }
        var values = call.base(
            "Operations",
            [
                "sources": sources, "no_sources": sources.isEmpty,
                "denied_chart": Charts.bars(
                    title: "Denied requests per day", labels: labels.map(dayLabel), values: labels.map { Double(denied[$0] ?? 0) }),
            ])
        if values["admin"] as? Bool == true {
            values["principals"] = try await call.service.principals.list().map {
                ["name": $0.name, "role": $0.role, "namespace": $0.namespace, "revoked": $0.revoked, "origins": $0.origins.joined(separator: " ")]
                    as [String: Any]
            }
        }
        return Console.render("operations", values)
    }

    static let revoke: Console.SignedInPage = { call, session in
        let name = try field(call, "name")
        guard call.form["confirm"] == name else {
            throw ConsoleError(status: .unprocessableContent, title: "Not revoked", message: "To revoke, type the principal's name again.")
        }
        try await call.service.principals.revoke(name: name)
        call.sessions.drop(principal: name)
        call.context.audit.update { $0.reason = "principal '\(name)' revoked" }
        return Console.redirect("/console/operations")
    }

    // MARK: - Helpers

    static func row(_ e: AuditEntry) -> [String: Any] {
        [
            "seq": e.sequence, "at": iso(e.at), "actor": e.record.actor, "role": e.record.role, "action": e.record.action,
            "resource": e.record.resource, "outcome": e.record.outcome, "reason": e.record.reason,
            "denied": e.record.outcome != AuditOutcome.allowed.rawValue,
        ]
    }

    static func iso(_ millis: Int64) -> String {
        Date(timeIntervalSince1970: Double(millis) / 1000).ISO8601Format()
    }

    static func dayLabel(_ day: Int64) -> String {
        Date(timeIntervalSince1970: Double(day * 86_400)).ISO8601Format(.iso8601.month().day())
    }

    static func percent(_ x: Double) -> String { String(format: "%.1f%%", x * 100) }

    static func invalid(_ message: String) -> ConsoleError { ConsoleError(status: .badRequest, title: "Check the form", message: message) }

    static func field(_ call: ConsoleRequest, _ name: String) throws -> String {
        guard let value = call.form[name], !value.isEmpty else { throw invalid("\(name) is required") }
        return value
    }

    static func time(_ s: String, endOfDay: Bool) throws -> Int64 {
        guard let t = AuditTime.millis(s, endOfDay: endOfDay) else {
            throw invalid("times are a day (2026-12-05) or ISO 8601 (2026-12-05T10:00:00Z)")
        }
        return t
    }
}

/// The times an officer types to search the audit log, in the console and on the command line.
public enum AuditTime {
    /// A day (`2026-12-05`: from its first millisecond, or with `endOfDay` to its last, in UTC) or an ISO 8601 time,
    /// in milliseconds since the epoch; nil for anything else.
    public static func millis(_ s: String, endOfDay: Bool) -> Int64? {
        if let day = try? Date(s + "T00:00:00Z", strategy: .iso8601) {
            return Int64(day.timeIntervalSince1970 * 1000) + (endOfDay ? 86_400_000 - 1 : 0)
        }
        return Clean.parseISO8601(s).map { $0 * 1000 }
    }
}
