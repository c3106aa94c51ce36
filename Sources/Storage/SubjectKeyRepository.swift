/// What the key store holds, as seen from one transaction: per-subject data keys, stored wrapped by a master key,
/// and the tokens whose key was shredded. Implemented by a storage backend.
public protocol SubjectKeyRepository: SendableMetatype {
    /// True in a read-only transaction (a snapshot that may predate a shredding).
    var isReadOnlyTransaction: Bool { get }
    /// Registers `body` to run if the current write transaction rolls back.
    func onRollback(_ body: @escaping @Sendable () -> Void)
    /// The wrapped data key of `owner`, or nil when there is none.
    func wrappedSubjectKey(owner: String) throws -> [UInt8]?
    /// Stores a new wrapped key and clears any shredding record of `owner`.
    func insertSubjectKey(owner: String, version: UInt32, wrapped: [UInt8], createdAt: Int64) throws
    /// Deletes `owner`'s key and records the shredding. Returns whether a key existed.
    func deleteSubjectKey(owner: String, shreddedAt: Int64) throws -> Bool
    /// Up to `limit` keys not wrapped under master `version`.
    func subjectKeys(notUnder version: UInt32, limit: Int) throws -> [(owner: String, wrapped: [UInt8])]
    /// Replaces `owner`'s wrapped key (a re-wrap under another master version).
    func replaceSubjectKey(owner: String, version: UInt32, wrapped: [UInt8]) throws
    /// How many wrapped keys each master version protects.
    func subjectKeyVersionCounts() throws -> [UInt32: Int]
    /// Which of `owners` have a key (one statement on a database server; by default one read each).
    func subjectKeysExisting(among owners: [String]) throws -> Set<String>
}

extension SubjectKeyRepository {
    public func subjectKeysExisting(among owners: [String]) throws -> Set<String> {
        Set(try owners.filter { try wrappedSubjectKey(owner: $0) != nil })
    }
}
