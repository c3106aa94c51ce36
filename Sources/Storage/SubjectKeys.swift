import Foundation
import Synchronization
import Vault

/// Envelope encryption per subject.
///
/// Each subject token has a random 32-byte data key per use (``DataKeyOwner``), stored only wrapped by a master key
/// version. A subject's rows are sealed with that data key at their ``RowAddress`` (table, row, owner), so a ciphertext
/// copied to another row, table or subject fails to open. The key bytes stay inside the Vault.
/// Erasure deletes the wrapped key: every copy of the subject's rows, backups included, becomes noise.
public final class SubjectKeys: Sendable {
    private let ringBox: Mutex<KeyRing>
    private var ring: KeyRing { ringBox.withLock { $0 } }
    private let cache = Mutex<[String: DataKey]>([:])
    private let cacheLimit: Int
    /// Nothing is remembered while set (another gateway's shredding could not be heard).
    private let fenced = Atomic<Bool>(false)

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

    /// The subject's data key, creating one when `create` is true and none exists.
    /// - Throws: ``StorageError/Code/unreadable`` when the stored key cannot be unwrapped.
    public func dataKey(for owner: DataKeyOwner, in tx: some SubjectKeyRepository, create: Bool) throws -> DataKey? {
        let name = owner.rawValue
        if !fenced.load(ordering: .acquiring), let key = cache.withLock({ $0[name] }) { return key }
        if let wrapped = try tx.wrappedSubjectKey(owner: name) {
            let key: DataKey
            do {
                key = try ring.unwrapDataKey(wrapped, for: owner)
            } catch let error as VaultError {
                throw StorageError(.unreadable, "a subject data key cannot be unwrapped: \(error.message)")
            }
            // Only a key read on the writer is remembered: a reader's snapshot may predate a shredding that has
            // already cleared the cache, and remembering its key would bring the shredded key back for later
            // writes (rows sealed under a key that is stored nowhere).
            if !tx.isReadOnlyTransaction { remember(name, key) }
            return key
        }
        guard create else { return nil }
        let ring = self.ring
        let (key, wrapped) = ring.newDataKey(for: owner)
        try tx.insertSubjectKey(owner: name, version: ring.currentVersion, wrapped: wrapped, createdAt: Int64(clock().timeIntervalSince1970))
        remember(name, key)
        // The wrapped key is stored only if this transaction commits: on rollback, a remembered key would seal later
        // rows with a key no restart can find.
        tx.onRollback { self.cache.withLock { _ = $0.removeValue(forKey: name) } }
        return key
    }

    private func remember(_ token: String, _ key: DataKey) {
        guard !fenced.load(ordering: .acquiring) else { return }
        cache.withLock { cache in
            if cache.count >= cacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[token] = key
        }
    }

    /// Seals `plaintext` for the row at `address`, creating its owner's key if needed.
    public func seal(_ plaintext: [UInt8], at address: RowAddress, in tx: some SubjectKeyRepository) throws -> [UInt8] {
        try dataKey(for: address.owner, in: tx, create: true)!.seal(plaintext, at: address)
    }

    /// Opens the values of one owner (a subject's interactions) with one key-store read, where ``open(_:at:in:)`` per
    /// value would read the key again for each (a round trip each on a database server: most of an uncached
    /// recommendation's time on PostgreSQL). Nil when the owner's key is gone; the opener throws as ``open(_:at:in:)``.
    public func opener(
        for owner: DataKeyOwner, in tx: some SubjectKeyRepository
    ) throws -> (@Sendable (_ sealed: [UInt8], _ address: RowAddress) throws -> [UInt8])? {
        guard let key = try dataKey(for: owner, in: tx, create: false) else { return nil }
        return { sealed, address in
            do {
                return try key.open(sealed, at: address)
            } catch let error as VaultError {
                throw StorageError(.unreadable, "a sealed row cannot be opened: \(error.message)")
            }
        }
    }

    /// Opens a value sealed by ``seal(_:at:in:)``.
    /// - Throws: ``StorageError`` `.shredded` when the owner's key is gone, `.unreadable` on any mismatch.
    public func open(_ sealed: [UInt8], at address: RowAddress, in tx: some SubjectKeyRepository) throws -> [UInt8] {
        guard let key = try dataKey(for: address.owner, in: tx, create: false) else {
            throw StorageError(.shredded, "the subject's data key does not exist (erased or never written)")
        }
        do {
            return try key.open(sealed, at: address)
        } catch let error as VaultError {
            throw StorageError(.unreadable, "a sealed row cannot be opened: \(error.message)")
        }
    }

    /// Crypto-shreds a subject: deletes its wrapped data key and records the erasure (by token).
    /// The caller deletes the subject's rows in the same transaction and checkpoints afterwards.
    /// - Returns: whether a key existed.
    @discardableResult
    public func shred(_ owner: DataKeyOwner, in tx: some SubjectKeyRepository) throws -> Bool {
        cache.withLock { _ = $0.removeValue(forKey: owner.rawValue) }
        return try tx.deleteSubjectKey(owner: owner.rawValue, shreddedAt: Int64(clock().timeIntervalSince1970))
    }

    /// Creates the data keys of `owners` that do not exist yet, in a transaction of the key store alone, before the
    /// transaction that seals rows with them. SQLite commits the data file before an attached key store, and not
    /// atomically with it: a key created in the same transaction as its rows could be lost in a crash while the rows
    /// stay, sealed under a key stored nowhere.
    public func ensureKeys<Tx: SubjectKeyRepository>(_ owners: some Collection<DataKeyOwner>, in database: some TransactionRunner<Tx>) async throws {
        // A key in the cache exists (shredding removes it from the cache first): no read needed for those.
        let owners = cache.withLock { known in owners.filter { known[$0.rawValue] == nil } }
        guard !owners.isEmpty else { return }
        let missing = try await database.read { tx in
            let existing = try tx.subjectKeysExisting(among: owners.map(\.rawValue))
            return owners.filter { !existing.contains($0.rawValue) }
        }
        guard !missing.isEmpty else { return }
        try await database.write { tx in
            for owner in missing { _ = try self.dataKey(for: owner, in: tx, create: true) }
        }
    }

    /// Shreds the data keys of `owners` in a transaction of the key store alone, committed before the caller deletes
    /// the rows: whatever a crash interrupts afterwards, the rows left behind can no longer be opened.
    public func shredKeys<Tx: SubjectKeyRepository>(_ owners: some Collection<DataKeyOwner>, in database: some TransactionRunner<Tx>) async throws {
        guard !owners.isEmpty else { return }
        let owners = Array(owners)
        try await database.write { tx in
            for owner in owners { try self.shred(owner, in: tx) }
        }
    }

    /// Drops the subject's cached data keys (another gateway shredded them).
    public func forgetCached(token: String) {
        cache.withLock { cache in
            for use in DataKeyOwner.Use.allCases { cache.removeValue(forKey: DataKeyOwner(token: token, use: use).rawValue) }
        }
    }

    /// While fenced every key is read from the key store and none is remembered (the watch over other gateways'
    /// shreddings is down); fencing drops what is remembered.
    public func fence(_ on: Bool) {
        fenced.store(on, ordering: .releasing)
        if on { clearCache() }
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
                try tx.replaceSubjectKey(
                    owner: row.owner, version: ring.currentVersion, wrapped: try ring.rewrapDataKey(row.wrapped, ownerName: row.owner))
            }
            return rows.count
        }
    }
}
