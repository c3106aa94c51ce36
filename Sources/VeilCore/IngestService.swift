import Consent
import FeatureStore
import Foundation
import Serving
import Ingestion
import Persistence
import Policy
import Prometheus
import Pseudonymization
import Recommender
import Storage
import Synchronization
import Vault

/// Events and the catalog coming in: validated, cleaned, screened for outliers, checked against consent, tokenized,
/// minimized, sealed and committed, a batch at a time.
public final class IngestService: Sendable {
    let parser: EventParser
    let policy: PolicySet
    let principals: PrincipalStore
    let tokenizer: Tokenizer
    let termHasher: FeatureHasher
    let deliveryKeys: DeliveryKeying
    let linker: IdentityLinker
    let ledger: ConsentLedger
    let deliveries: DeliveryLog
    let features: FeatureStore
    let identities: IdentityMap
    let sourceQuality: SourceQualityLog
    let keys: SubjectKeys
    let store: any OperationalStore
    let cache: RecommendationCache
    let experiments: ExperimentTracker
    let promotions: PromotionBandits
    let forgetting: Forgetting
    let outliers: OutlierDetector
    let qualityMonitor: DataQualityMonitor
    let metrics: VeilMetrics
    let now: @Sendable () -> Date
    /// Item → category path, for per-category outlier statistics; loaded on first use, updated by `PUT /v1/items`.
    /// Item → category once read, and how many catalog uploads this process has made (a read that an upload
    /// overtook is not kept: it may lack the upload's items).
    private let categories = Mutex<(known: [String: String]?, uploads: Int)>((nil, 0))

    init(
        parser: EventParser, policy: PolicySet, principals: PrincipalStore, tokenizer: Tokenizer, termHasher: FeatureHasher,
        deliveryKeys: DeliveryKeying, linker: IdentityLinker, ledger: ConsentLedger, deliveries: DeliveryLog, features: FeatureStore,
        identities: IdentityMap, sourceQuality: SourceQualityLog, keys: SubjectKeys, store: any OperationalStore, cache: RecommendationCache,
        experiments: ExperimentTracker, promotions: PromotionBandits, forgetting: Forgetting, outliers: OutlierDetector, quality: DataQualityMonitor,
        metrics: VeilMetrics, now: @escaping @Sendable () -> Date
    ) {
        self.parser = parser
        self.policy = policy
        self.principals = principals
        self.tokenizer = tokenizer
        self.termHasher = termHasher
        self.deliveryKeys = deliveryKeys
        self.linker = linker
        self.ledger = ledger
        self.deliveries = deliveries
        self.features = features
        self.identities = identities
        self.sourceQuality = sourceQuality
        self.keys = keys
        self.store = store
        self.cache = cache
        self.experiments = experiments
        self.promotions = promotions
        self.forgetting = forgetting
        self.outliers = outliers
        self.qualityMonitor = quality
        self.metrics = metrics
        self.now = now
    }

    /// Item → category, read once. The read suspends instead of blocking: many first batches arriving together
    /// once blocked both threads of the cooperative pool waiting for a reader connection that only a suspended read on
    /// that pool could give back (a deadlock seen under load). A failed read is not remembered.
    func catalogCategories() async -> [String: String] {
        let (known, uploads) = categories.withLock { ($0.known, $0.uploads) }
        if let known { return known }
        let features = self.features
        guard let catalog = try? await store.read({ db in try features.catalog(in: db) }) else { return [:] }
        let loaded = catalog.reduce(into: [String: String]()) { $0[$1.id] = $1.category }
        return categories.withLock { state in
            if state.known == nil, state.uploads == uploads { state.known = loaded }
            return state.known ?? loaded
        }
    }

    /// An event with the work that needs no database done.
    struct PreparedEvent: Sendable {
        let event: CleanEvent
        /// The subject's token in the sending namespace, before identity links.
        let source: SubjectToken
        /// Keyed hashes of the event id and of its content, for deduplication.
        let delivery: DeliveryLog.Keys
        /// The minimized fields; nil when the personalization purpose does not cover the event's category.
        let kept: [String: FieldValue]?
        /// Signed hash buckets of a search query's words.
        let terms: [Int32]
    }

    /// Validate → clean → consent → tokenize → minimize → seal → commit, for a whole batch in one transaction.
    ///
    /// The transaction runs on the database's writer queue while the request's task is suspended: a blocking write
    /// held one of the cooperative pool's two threads through the wait for the write lock and the commit,
    /// so a stream of small event batches starved every other request (docs/design-notes.md).
    public func ingest(body: [UInt8], principal: Principal, gpcHeader: Bool, note: AuditNote) async throws -> IngestResult {
        let at = now()
        let parsed = try parse(body, principal: principal, at: at)
        let screened = outliers.screen(parsed.events, categories: await catalogCategories())
        for (field, n) in screened.fields { metrics.outliers(field: field, action: outliers.policy.action.rawValue).increment(by: Int64(n)) }
        let rejections = (parsed.rejected + screened.rejected).sorted { $0.index < $1.index }
        note.update {
            $0.purpose = CorePurpose.personalization.rawValue; $0.reason = "\(screened.kept.count) valid, \(rejections.count) rejected"
        }
        var quality: [String: SourceQualityLog.Delta] = [:]
        for r in rejections {
            quality[r.source ?? "unknown", default: .init()].events += 1
            quality[r.source ?? "unknown", default: .init()].rejected += 1
        }
        for (_, event) in parsed.events {
            quality[event.source, default: .init()].completenessSum += event.completeness
        }
        for (_, event) in screened.kept { quality[event.source, default: .init()].events += 1 }
        for (source, n) in screened.flagged { quality[source, default: .init()].outliers += n }
        let prepared = prepare(screened.kept.map(\.event), principal: principal, at: at)
        // The keys this batch will seal with, created in the key store alone before the batch's transaction (see
        // SubjectKeys.ensureKeys): those of every subject with personalization consent.
        let owners = try await keyOwners(of: Set(prepared.map(\.source)), at: at)
        try await keys.ensureKeys(owners, in: store)
        let written = try await commit(prepared, quality: quality, principal: principal, gpcHeader: gpcHeader, at: at)
        let result = IngestResult(
            accepted: written.accepted, duplicates: written.duplicates, anonymized: written.anonymized,
            rejected: rejections.map { .init(index: $0.index, reason: $0.reason) })
        for token in written.touched { cache.drop(token: token) }
        // A GPC signal withdraws marketing: lists with promotions and the bandits' exposures go, as for one sent alone.
        for token in written.gpc { cache.drop(token: token.rawValue) }
        forgetting.forgetInModels(written.gpc, unlearn: false)
        for (token, kind, item) in written.outcomes {
            experiments.outcome(token: token, kind: kind, at: at)
            if ExperimentTracker.outcomeOfKind[kind] != nil { promotions.reward(token: token, item: item, at: at) }
        }
        await qualityMonitor.watch()
        metrics.recordIngest(
            source: principal.namespace, accepted: result.accepted, rejected: result.rejected.count,
            duplicates: result.duplicates, at: at)
        return result
    }

    /// The batch parsed; for a browser key, what a page may not send (purchases, profiles, others' ids) refused.
    func parse(_ body: [UInt8], principal: Principal, at: Date) throws -> (events: [(index: Int, event: CleanEvent)], rejected: [Rejection]) {
        // A batch the parser refuses as a whole reaches the edge as the parser's own error.
        var parsed = try parser.parse(body: body, now: at)
        guard principal.isBrowser else { return parsed }
        // A page speaks for the person on it only; what they bought or who they are comes from the shop's server.
        // By bytes, as tokens are made: String equality would let a proven "café" vouch for "cafe\u{301}" too.
        for subject in Set(parsed.events.map { Array($0.event.subject.utf8) })
        where !principals.browserMayName(String(decoding: subject, as: UTF8.self), principal, at: at) {
            throw PrincipalStore.subjectProofRequired
        }
        let refused = parsed.events.filter { [.purchase, .profile].contains($0.event.kind) }
        if !refused.isEmpty {
            parsed.events.removeAll { [.purchase, .profile].contains($0.event.kind) }
            parsed.rejected += refused.map {
                Rejection(
                    index: $0.index, reason: "a browser key cannot send \($0.event.kind.rawValue) events; send them from the shop's server",
                    source: $0.event.source)
            }
        }
        return parsed
    }

    /// Everything that needs no database, done before the write transaction, which batches from concurrent requests
    /// take in turn: keyed hashes, minimization, search-term hashing.
    func prepare(_ events: [CleanEvent], principal: Principal, at: Date) -> [PreparedEvent] {
        let minimizer = Minimizer(policy: policy, currentYear: Calendar(identifier: .gregorian).component(.year, from: at))
        let personalizable = policy.purposes[CorePurpose.personalization.rawValue]?.categories ?? []
        // Keyed by the id's bytes: String equality would merge two ids that differ only in Unicode normalization.
        var sourceTokens: [[UInt8]: SubjectToken] = [:]
        return events.map { event -> PreparedEvent in
            let bytes = Array(event.subject.utf8)
            let source = sourceTokens[bytes] ?? tokenizer.token(for: event.subject, namespace: principal.namespace)
            sourceTokens[bytes] = source
            let kept = personalizable.contains(event.kind.category) ? minimizer.minimize(event.fields, category: event.kind.category) : nil
            var terms: [Int32] = []
            if event.kind == .search, let query = kept?["query"]?.stringValue { terms = Array(termHasher.signedTerms(query).prefix(32)) }
            return PreparedEvent(
                event: event, source: source,
                delivery: deliveryKeys.keys(namespace: principal.namespace, id: event.id, content: event.contentKey),
                kept: kept, terms: terms)
        }
    }

    /// The data keys a batch from these sources will seal with: those of every person with personalization consent.
    func keyOwners(of sources: Set<SubjectToken>, at: Date) async throws -> [DataKeyOwner] {
        let linker = self.linker, ledger = self.ledger
        return try await store.read { db -> [DataKeyOwner] in
            // Every person's token, then every decision, each in one read (on a database server, a round trip each).
            let tokens = Set(try linker.canonical(sources, in: db).values)
            let decisions = try ledger.decisions(tokens: tokens, purpose: CorePurpose.personalization.rawValue, at: at, in: db)
            return tokens.filter { decisions[$0]?.allowed == true }.flatMap { [FeatureStore.keyOwner($0), IdentityMap.keyOwner($0)] }
        }
    }

    /// What a batch's transaction wrote.
    struct Written: Sendable {
        var accepted = 0, duplicates = 0, anonymized = 0
        /// Tokens whose cached lists are now stale.
        var touched: Set<String> = []
        /// Tokens whose GPC signal this batch recorded (a withdrawal of marketing).
        var gpc: [SubjectToken] = []
        var outcomes: [(token: String, kind: InteractionKind, item: String)] = []
    }

    /// The batch's one write transaction: per event, the person's token, a GPC signal recorded once, deduplication,
    /// anonymous counts, and (with personalization consent) the sealed rows; then the source-quality counters.
    ///
    /// Reads and writes go set by set, not event by event: every person's token, every consent decision and every
    /// delivery key of the batch in one read each, the new rows in one insert each. On a database server each statement
    /// is a round trip under the one writer lock, and 50 events from 50 people cost some 400 of them one at a time.
    func commit(
        _ prepared: [PreparedEvent], quality counted: [String: SourceQualityLog.Delta], principal: Principal, gpcHeader: Bool, at: Date
    ) async throws -> Written {
        try await store.write { db -> Written in
            var quality = counted, written = Written()
            var gpcDone = Set<SubjectToken>()
            var anonymousCounts: [FeatureStore.AnonymousCount: Int] = [:]
            let tokens = try linker.canonical(Set(prepared.map(\.source)), in: db)
            let tokenOf = { (p: PreparedEvent) in tokens[p.source]! }
            // A browser with GPC on sends the header with every batch: the ledger records the signal once, not again
            // while marketing stays withdrawn. (It withdraws marketing only: personalization below is read after.)
            if gpcHeader {
                var marketing = try ledger.decisions(tokens: Set(tokens.values), purpose: CorePurpose.marketing.rawValue, at: at, in: db)
                for p in prepared where marketing[tokenOf(p)]?.reason != .withdrawn {
                    try ledger.recordGPC(
                        token: tokenOf(p), at: at, sourceApp: principal.namespace, principal: principal.name,
                        noticeVersion: policy.currentNotice, jurisdiction: ConsentLedger.unspecifiedJurisdiction, in: db)
                    gpcDone.insert(tokenOf(p))
                    marketing[tokenOf(p)] = ConsentDecision(allowed: false, reason: .withdrawn)
                }
            }
            let firsts = try deliveries.firstDeliveries(prepared.map { (tokenOf($0), $0.delivery, $0.event.timestamp) }, in: db)
            let decisions = try ledger.decisions(
                tokens: Set(zip(prepared, firsts).filter(\.1).map { tokenOf($0.0) }), purpose: CorePurpose.personalization.rawValue, at: at,
                in: db)
            var interactions: [(interaction: StoredInteraction, id: String, token: SubjectToken)] = []
            var people: [(subject: String, token: SubjectToken)] = []
            for (p, first) in zip(prepared, firsts) {
                let event = p.event, token = tokenOf(p)
                guard first else {
                    written.duplicates += 1
                    quality[event.source, default: .init()].duplicates += 1
                    continue
                }
                written.accepted += 1
                quality[event.source, default: .init()].accepted += 1
                // Freshness is about deliveries: a backfill of old events is fresh data from a live source.
                quality[event.source, default: .init()].lastEvent = Int64(at.timeIntervalSince1970)
                for signal in event.signals { anonymousCounts[.init(item: signal.item, day: event.timestamp / 86_400), default: 0] += 1 }
                guard decisions[token]?.allowed == true, let kept = p.kept else {
                    written.anonymized += 1
                    continue
                }
                // Experiments and bandits learn only from subjects with personalization consent.
                for signal in event.signals { written.outcomes.append((token.rawValue, signal.kind, signal.item)) }
                if event.kind == .profile {
                    try features.setProfile(kept.compactMapValues { $0.stringValue }, token: token, in: db)
                }
                interactions += keep(p, token: token)
                if !written.touched.contains(token.rawValue) { people.append((event.subject, token)) }
                written.touched.insert(token.rawValue)
            }
            try features.add(interactions, in: db)
            try identities.remember(people, in: db)
            try features.countAnonymous(anonymousCounts, in: db)
            try sourceQuality.record(quality, day: Int64(at.timeIntervalSince1970) / 86_400, in: db)
            written.gpc = Array(gpcDone)
            try db.announce(written.gpc.map { .forgotten(token: $0.rawValue, unlearn: false) })
            return written
        }
    }

    /// One consented event's interactions, to be sealed under the person's key: the hashed search terms and each signal.
    func keep(_ p: PreparedEvent, token: SubjectToken) -> [(interaction: StoredInteraction, id: String, token: SubjectToken)] {
        let event = p.event, deliveryID = p.delivery.id
        var out: [(interaction: StoredInteraction, id: String, token: SubjectToken)] = []
        if !p.terms.isEmpty {
            // Only hashed buckets of the words are kept: enough to match item text, not to read the query back.
            out.append(
                (
                    StoredInteraction(
                        item: "", kind: .searchTerms, weight: 1, time: event.timestamp, terms: p.terms, termWidth: Int32(termHasher.width)),
                    "\(deliveryID)-q", token
                ))
        }
        for (n, signal) in event.signals.enumerated() {
            out.append(
                (StoredInteraction(item: signal.item, kind: signal.kind, weight: signal.weight, time: event.timestamp), "\(deliveryID)-\(n)", token))
        }
        return out
    }

    public func upsertItems(_ items: [CatalogItem]) async throws {
        guard !items.isEmpty, items.count <= 10_000 else { throw CoreError.invalid("send 1 to 10000 items") }
        for item in items where item.id.isEmpty || item.title.isEmpty {
            throw CoreError.invalid("every item needs an id and a title")
        }
        for item in items where item.id.utf8.count > 256 {
            throw CoreError.unprocessable("an item id is at most 256 bytes")
        }
        let at = now()
        try await store.write { try features.upsert(items, at: at, in: $0) }
        categories.withLock { state in
            state.uploads += 1
            guard state.known != nil else { return }
            for item in items { state.known![item.id] = item.category }
        }
    }
}
