/// Every table that holds a subject's token, and what erasure, export and retention do with it. `DataInventoryTests`
/// fails when a table with a token column is missing here, and checks that erasure leaves nothing of a subject in
/// the tables marked ``Erasure/deleted``.
public enum DataInventory {
    public enum Erasure: Sendable, Equatable {
        /// Every row of the subject's tokens is deleted (and sealed rows are shredded first).
        case deleted
        /// Kept, with the reason: a legal record that holds the token and nothing else about the person.
        case kept(String)
    }

    public struct Table: Sendable {
        /// `schema.table`: `main` is the data file, `keystore` the key store.
        public let name: String
        /// Columns that hold a token (or a key owner `<token>#<purpose>`).
        public let tokenColumns: [String]
        public let erasure: Erasure
        public let export: String
        public let retention: String
    }

    public static let tables: [Table] = [
        Table(
            name: "main.interactions", tokenColumns: ["token"], erasure: .deleted, export: "interactions",
            retention: "deleted after the personalization purpose's retention_days"),
        Table(name: "main.profiles", tokenColumns: ["token"], erasure: .deleted, export: "profile", retention: "with the subject"),
        Table(
            name: "main.identities", tokenColumns: ["token"], erasure: .deleted, export: "not exported: it holds the id the requester already gave",
            retention: "with the subject"),
        Table(
            name: "main.deliveries", tokenColumns: ["token"], erasure: .deleted, export: "not exported: keyed hashes for deduplication only",
            retention: "deleted after the personalization purpose's retention_days"),
        Table(
            name: "main.match_keys", tokenColumns: ["token"], erasure: .deleted, export: "not exported: keyed hashes for linking only",
            retention: "with the subject"),
        Table(
            name: "main.identity_links", tokenColumns: ["token", "canonical"], erasure: .deleted, export: "token (canonical)",
            retention: "with the subject, or `veil link undo`"),
        Table(
            name: "main.consent_events", tokenColumns: ["token"],
            erasure: .kept("proof of consent and of its withdrawal (Art. 7(1) GDPR); erasure appends the withdrawals"),
            export: "consents", retention: "kept as the legal record"),
        Table(
            name: "main.consent_state", tokenColumns: ["token"], erasure: .kept("derived from consent_events, recomputed by `veil consent verify`"),
            export: "consents", retention: "kept with the ledger"),
        Table(
            name: "keystore.subject_keys", tokenColumns: ["token"], erasure: .deleted, export: "never (key material)",
            retention: "with the subject"),
        Table(
            name: "keystore.shredded_subjects", tokenColumns: ["token"], erasure: .kept("the record that the subject's key was shredded"),
            export: "not exported", retention: "kept"),
    ]
}
