/// A published model version as stored: who may load it and from how many parts.
public struct PublishedModel: Sendable, Equatable {
    public var version: String
    /// When the snapshot it was trained from was read (seconds since 1970, the trainer's clock).
    public var trainedAt: Int64
    /// The announcement generation of that snapshot (``InvalidationRepository/announcementGeneration()``): the model
    /// saw every change announced up to it.
    public var generation: Int64
    public var parts: Int

    public init(version: String, trainedAt: Int64, generation: Int64, parts: Int) {
        self.version = version
        self.trainedAt = trainedAt
        self.generation = generation
        self.parts = parts
    }
}

/// The served model, kept in the database so that one gateway trains and every gateway on the database serves what it
/// trained. Parts are sealed by the core before they get here (a model holds pseudonymous per-subject state).
public protocol ModelRepository {
    /// Stores one part of a version that is not published yet.
    func insertModelPart(version: String, index: Int, bytes: [UInt8]) throws
    /// Makes `model` the published one if `expected` still is (nil: none is). Returns every other version that has
    /// parts (an earlier model may still hold a withdrawn subject), so that their keys can be shredded in the same unit
    /// of work and their parts deleted after it (``deleteModelParts(of:limit:)``); nil, changing nothing, when
    /// another version was published since: two trainers (one that lost its lock) never overwrite each other's model.
    func publishModel(_ model: PublishedModel, replacing expected: String?) throws -> [String]?
    /// Deletes up to `limit` parts of `version` (a retired one: never "every other", which would catch the parts a
    /// later trainer is writing); returns how many.
    func deleteModelParts(of version: String, limit: Int) throws -> Int
    /// The published model, if any.
    func publishedModel() throws -> PublishedModel?
    /// One part of a stored version; nil once the version was deleted.
    func modelPart(version: String, index: Int) throws -> [UInt8]?
}
