import Foundation
import Synchronization
import Vault

/// Envelope encryption per subject.
///
/// Each subject token has a random 32-byte data key, stored only wrapped by a master key version
/// (AD = `subject_keys|<token>`). A subject's rows are sealed with that data key, with associated data
/// binding table, row id and token, so a ciphertext copied to another row, table or subject fails to open.
/// Erasure deletes the wrapped key: every copy of the subject's rows, backups included, becomes noise.
public final class SubjectKeys: Sendable {
    private let ringBox: Mutex<KeyRing>
    private var ring: KeyRing { ringBox.withLock { $0 } }
    private let cache = Mutex<[String: SecretKey]>([:])
    private let cacheLimit: Int

    private let clock: @Sendable () -> Date

    public init(ring: KeyRing, cacheLimit: Int = 10_000, clock: @escaping @Sendable () -> Date = Date.init) {
        ringBox = Mutex(ring)
        self.clock = clock
        self.cacheLimit = cacheLimit
    }

    /// Swaps in a reloaded key ring (after a rotation) while requests run: new data keys are wrapped under its
    /// current version from now on, and cached data keys are dropped so that reads unwrap through the new ring.
    public func replaceRing(_ newRing: KeyRing) {
        ringBox.withLock { $0 = newRing }
        clearCache()
    }

    /// The master version new data keys are wrapped under.
    public var currentVersion: UInt32 { ring.currentVersion }

    /// The generation recorded in row envelopes sealed with a subject data key.
    static let dataKeyGeneration: UInt32 = 1

    private static func wrapAD(_ token: String) -> [UInt8] { Array("subject_keys|\(token)".utf8) }

    static func rowAD(table: String, rowID: String, token: String) -> [UInt8] {
        // Length prefixes keep the encoding unambiguous whatever the parts contain.
        var ad = [UInt8]("veil.row.v1".utf8)
        for part in [table, rowID, token] { ad.appendLengthPrefixed(part) }
        return ad
    }

    /// The subject's data key, creating one when `create` is true and none exists.
    /// - Throws: ``StorageError/Code/shredded`` when the subject was erased and `create` is false.
    public func dataKey(for token: String, in tx: some SubjectKeyRepository, create: Bool) throws -> SecretKey? {
        if let key = cache.withLock({ $0[token] }) { return key }
        if let wrapped = try tx.wrappedSubjectKey(owner: token) {
            var raw: [UInt8]
            do {
                raw = try ring.open(wrapped, associatedData: Self.wrapAD(token))
            } catch let error as VaultError {
                throw StorageError(.unreadable, "a subject data key cannot be unwrapped: \(error.message)")
            }
            defer { raw.wipe() }
            let key = try SecretKey(copying: raw, expectedCount: AEAD.keyLength)
            // Only a key read on the writer is remembered: a reader's snapshot may predate a shredding that has
            // already cleared the cache, and remembering its key would bring the shredded key back for later
            // writes (rows sealed under a key that is stored nowhere).
            if !tx.isReadOnlyTransaction { remember(token, key) }
            return key
        }
        guard create else { return nil }
        let key = SecretKey(randomCount: AEAD.keyLength)
        let ring = self.ring
        let wrapped = key.withUnsafeBytes { ring.seal(Array($0), associatedData: Self.wrapAD(token)) }
        try tx.insertSubjectKey(owner: token, version: ring.currentVersion, wrapped: wrapped, createdAt: Int64(clock().timeIntervalSince1970))
        remember(token, key)
        // The wrapped key is stored only if this transaction commits: on rollback, a remembered key would seal later
        // rows with a key no restart can find.
        tx.onRollback { self.cache.withLock { _ = $0.removeValue(forKey: token) } }
        return key
    }

    private func remember(_ token: String, _ key: SecretKey) {
        cache.withLock { cache in
            if cache.count >= cacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[token] = key
        }
    }

    /// Seals `plaintext` for `token`'s row `rowID` of `table`, creating the subject's key if needed.
    public func seal(_ plaintext: [UInt8], token: String, table: String, rowID: String, in tx: some SubjectKeyRepository) throws -> [UInt8] {
        let key = try dataKey(for: token, in: tx, create: true)!
        return AEAD.seal(plaintext, key: key, version: Self.dataKeyGeneration, associatedData: Self.rowAD(table: table, rowID: rowID, token: token))
    }

    /// Opens a value sealed by ``seal(_:token:table:rowID:in:)``.
    /// - Throws: ``StorageError`` `.shredded` when the subject's key is gone, `.unreadable` on any mismatch.
    public func open(_ sealed: [UInt8], token: String, table: String, rowID: String, in tx: some SubjectKeyRepository) throws -> [UInt8] {
        guard let key = try dataKey(for: token, in: tx, create: false) else {
            throw StorageError(.shredded, "the subject's data key does not exist (erased or never written)")
        }
        do {
            return try AEAD.open(sealed, associatedData: Self.rowAD(table: table, rowID: rowID, token: token)) { version in
                guard version == Self.dataKeyGeneration else {
                    throw VaultError(.unknownKeyVersion, "unknown subject key generation \(version)")
                }
                return key
            }
        } catch let error as VaultError {
            throw StorageError(.unreadable, "a sealed row cannot be opened: \(error.message)")
        }
    }

    /// Crypto-shreds a subject: deletes its wrapped data key and records the erasure (by token).
    /// The caller deletes the subject's rows in the same transaction and checkpoints afterwards.
    /// - Returns: whether a key existed.
    @discardableResult
    public func shred(token: String, in tx: some SubjectKeyRepository) throws -> Bool {
        cache.withLock { _ = $0.removeValue(forKey: token) }
        return try tx.deleteSubjectKey(owner: token, shreddedAt: Int64(clock().timeIntervalSince1970))
    }

    /// Creates the data keys of `owners` that do not exist yet, in a transaction of the key store alone, before the
    /// transaction that seals rows with them. SQLite commits the data file before an attached key store, and not
    /// atomically with it: a key created in the same transaction as its rows could be lost in a crash while the rows
    /// stay, sealed under a key stored nowhere.
    public func ensureKeys<Tx: SubjectKeyRepository>(_ owners: some Collection<String>, in database: some TransactionRunner<Tx>) async throws {
        // A key in the cache exists (shredding removes it from the cache first): no read needed for those.
        let owners = cache.withLock { known in owners.filter { known[$0] == nil } }
        guard !owners.isEmpty else { return }
        let missing = try await database.read { tx in try owners.filter { try tx.wrappedSubjectKey(owner: $0) == nil } }
        guard !missing.isEmpty else { return }
        try await database.write { tx in
            for owner in missing { _ = try self.dataKey(for: owner, in: tx, create: true) }
        }
    }

    /// Shreds the data keys of `owners` in a transaction of the key store alone, committed before the caller deletes
    /// the rows: whatever a crash interrupts afterwards, the rows left behind can no longer be opened.
    public func shredKeys<Tx: SubjectKeyRepository>(_ owners: some Collection<String>, in database: some TransactionRunner<Tx>) async throws {
        guard !owners.isEmpty else { return }
        let owners = Array(owners)
        try await database.write { tx in
            for owner in owners { try self.shred(token: owner, in: tx) }
        }
    }

    /// Drops every cached data key (after a key ring reload, say).
    public func clearCache() { cache.withLock { $0.removeAll() } }

    /// How many wrapped keys each master version protects.
    public static func versionCounts<Tx: SubjectKeyRepository>(in database: some TransactionRunner<Tx>) throws -> [UInt32: Int] {
        try database.readBlocking { try $0.subjectKeyVersionCounts() }
    }

    /// Re-wraps up to `batchSize` subject keys that are not yet under the current master version, in one
    /// transaction. Call until it returns 0; safe to interrupt and run again.
    /// - Returns: how many keys this batch re-wrapped.
    public func rewrapBatch<Tx: SubjectKeyRepository>(in database: some TransactionRunner<Tx>, batchSize: Int = 500) throws -> Int {
        let ring = self.ring
        return try database.writeBlocking { tx in
            let rows = try tx.subjectKeys(notUnder: ring.currentVersion, limit: batchSize)
            for row in rows {
                var raw = try ring.open(row.wrapped, associatedData: Self.wrapAD(row.owner))
                let rewrapped = ring.seal(raw, associatedData: Self.wrapAD(row.owner))
                raw.wipe()
                try tx.replaceSubjectKey(owner: row.owner, version: ring.currentVersion, wrapped: rewrapped)
            }
            return rows.count
        }
    }
}
