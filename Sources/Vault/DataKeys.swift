/// Whose rows a data key protects, and for which use: one key per subject token and use, so that withdrawing
/// personalization shreds the behaviour rows and leaves the identity a subject may still ask to export.
public struct DataKeyOwner: Hashable, Sendable {
    public enum Use: String, Sendable, CaseIterable {
        case personalization
        case identity
        /// A published model version's key (the "token" is the version): retiring the version shreds it, so that no
        /// backup of the database can bring back a model that still held a withdrawn subject.
        case model
    }

    public let token: String
    public let use: Use

    public init(token: String, use: Use) {
        self.token = token
        self.use = use
    }

    /// How the key store names the key (`<token>#<use>`).
    public var rawValue: String { "\(token)#\(use.rawValue)" }
}

/// The tables whose rows are sealed with a subject's data key. A closed set: the name is bound into every sealed row,
/// so a new table is a decision made here, not a string picked by a caller.
public enum SealedTable: String, Sendable, CaseIterable {
    case interactions
    case profiles
    case identities
    /// The parts of a published model (``DataKeyOwner/Use/model``).
    case models
}

/// Where a sealed value lives: its table, its row and the key's owner. Bound into the ciphertext as associated data,
/// so a value copied to another row, table or subject fails to open.
public struct RowAddress: Sendable, Equatable {
    public let table: SealedTable
    public let row: String
    public let owner: DataKeyOwner

    public init(table: SealedTable, row: String, owner: DataKeyOwner) {
        self.table = table
        self.row = row
        self.owner = owner
    }

    /// Length prefixes keep the encoding unambiguous whatever the parts contain. These bytes are in every sealed row
    /// on disk: a change makes every stored row unreadable (a test pins them).
    var associatedData: [UInt8] {
        var ad = [UInt8]("veil.row.v1".utf8)
        for part in [table.rawValue, row, owner.rawValue] { ad.appendLengthPrefixed(part) }
        return ad
    }
}

/// A subject's data key, unwrapped: it seals and opens values at row addresses of its own owner only, and never hands
/// out its bytes.
public struct DataKey: Sendable {
    let key: SecretKey
    /// Whose key it is: a value of another owner is neither sealed nor opened with it.
    public let owner: DataKeyOwner
    /// The generation recorded in row envelopes sealed with a data key.
    static let generation: UInt32 = 1

    /// Seals `plaintext` for the row at `address`, which must be one of this key's owner (a programming error
    /// otherwise: the row would not become noise when that owner's key is shredded).
    public func seal(_ plaintext: [UInt8], at address: RowAddress) -> [UInt8] {
        precondition(address.owner == owner, "a data key seals rows of its own owner only")
        return AEAD.seal(plaintext, key: key, version: Self.generation, associatedData: address.associatedData)
    }

    /// - Throws: ``VaultError`` when the value was altered, moved to another address or sealed with another key, or
    ///   when `address` is not of this key's owner.
    public func open(_ sealed: [UInt8], at address: RowAddress) throws -> [UInt8] {
        guard address.owner == owner else { throw VaultError(.authenticationFailed, "a data key opens rows of its own owner only") }
        return try AEAD.open(sealed, associatedData: address.associatedData) { version in
            guard version == Self.generation else { throw VaultError(.unknownKeyVersion, "unknown subject key generation \(version)") }
            return key
        }
    }
}

extension KeyRing {
    /// The associated data that binds a wrapped data key to its owner's name in the key store.
    static func wrapAD(_ ownerName: String) -> [UInt8] { Array("subject_keys|\(ownerName)".utf8) }

    /// A new random data key for `owner`, and the same key wrapped under the current master version for the key store.
    public func newDataKey(for owner: DataKeyOwner) -> (key: DataKey, wrapped: [UInt8]) {
        let key = SecretKey(randomCount: AEAD.keyLength)
        let wrapped = key.withUnsafeBytes { bytes in
            var raw = Array(bytes)
            defer { raw.wipe() }
            return seal(raw, associatedData: Self.wrapAD(owner.rawValue))
        }
        return (DataKey(key: key, owner: owner), wrapped)
    }

    /// The data key stored wrapped for `owner`.
    public func unwrapDataKey(_ wrapped: [UInt8], for owner: DataKeyOwner) throws -> DataKey {
        var raw = try open(wrapped, associatedData: Self.wrapAD(owner.rawValue))
        defer { raw.wipe() }
        return DataKey(key: try SecretKey(copying: raw, expectedCount: AEAD.keyLength), owner: owner)
    }

    /// A wrapped data key, wrapped again under the current master version (key rotation). `ownerName` is the key
    /// store's name for it.
    public func rewrapDataKey(_ wrapped: [UInt8], ownerName: String) throws -> [UInt8] {
        var raw = try open(wrapped, associatedData: Self.wrapAD(ownerName))
        defer { raw.wipe() }
        return seal(raw, associatedData: Self.wrapAD(ownerName))
    }
}
