import Foundation
import Persistence
import Serving
import Storage
import Vault

/// The one model every gateway of a shared database serves. The gateway that trains publishes it here, in parts sealed
/// under a key of the version's own; the others load it when it is announced. Publishing a version deletes every other
/// one and shreds its key: a model may hold a withdrawn subject's factors, and no backup of the database may bring
/// one back.
final class ModelSharing: Sendable {
    let store: any OperationalStore
    let keys: SubjectKeys
    /// Parts small enough that each write holds the database's writer lock briefly (other gateways' consent changes
    /// wait for it), large enough that a model of hundreds of megabytes is tens of writes.
    let partSize: Int

    init(store: any OperationalStore, keys: SubjectKeys, partSize: Int = 8 << 20) {
        self.store = store
        self.keys = keys
        self.partSize = partSize
    }

    /// Stores `model`, makes it the published one in place of `expected` and announces it in the same transaction.
    /// - Parameters:
    ///   - trainedAt: when the snapshot it was trained from was read.
    ///   - generation: that snapshot's announcement generation.
    /// - Returns: the generation stored with it (the model saw every announcement up to it).
    /// - Throws: ``CoreError`` `model_superseded` when another version than `expected` was published meanwhile.
    @discardableResult
    func publish(_ model: ServingModel, trainedAt: Date, generation: Int64, replacing expected: String?) throws -> Int64 {
        let bytes = try model.encoded()
        let owner = DataKeyOwner(token: model.version, use: .model)
        let keys = self.keys
        // The key commits before any part sealed with it (a key store apart from the data commits on its own).
        guard let key = try store.writeBlocking({ try keys.dataKey(for: owner, in: $0, create: true) }) else {
            throw CoreError(.internal, "model_key", "no key could be made for the model")
        }
        let parts = max(1, (bytes.count + partSize - 1) / partSize)
        for index in 0..<parts {
            let sealed = key.seal(Array(bytes[index * partSize..<min(bytes.count, (index + 1) * partSize)]), at: address(model.version, index))
            try store.writeBlocking { try $0.insertModelPart(version: model.version, index: index, bytes: sealed) }
        }
        let (retired, seen) = try store.writeBlocking { tx in
            try tx.announce([.model(version: model.version)])
            // The announcement of the model itself is no change it missed: when it is the only one since the snapshot,
            // the model saw every announcement up to its own.
            let now = try tx.announcementGeneration()
            let seen = now == generation + 1 ? now : generation
            guard
                let retired = try tx.publishModel(
                    PublishedModel(version: model.version, trainedAt: Int64(trainedAt.timeIntervalSince1970), generation: seen, parts: parts),
                    replacing: expected)
            else {
                throw CoreError(.conflict, "model_superseded", "another gateway published a model while this one trained")
            }
            for version in retired { try keys.shred(DataKeyOwner(token: version, use: .model), in: tx) }
            return (retired, seen)
        }
        // Their parts are noise now; deleted a few at a time, so that no write waits long behind the deletion. The model
        // is published whatever happens here: what is left is deleted after the next publish.
        for version in retired {
            while (try? store.writeBlocking({ try $0.deleteModelParts(of: version, limit: 4) })) ?? 0 > 0 {}
        }
        // The retired keys' bytes leave the engine's files too, as a subject's do after an erasure.
        if !retired.isEmpty {
            let store = self.store
            Task { _ = await store.scrubAfterErasure() }
        }
        return seen
    }

    /// The published model's version and when its snapshot was read; nil before any was published.
    func published() throws -> PublishedModel? { try store.readBlocking { try $0.publishedModel() } }

    /// Loads and opens a published version, from one snapshot of the database.
    /// - Throws: ``CoreError`` `model_retired` when a newer version replaced it meanwhile (load that one instead).
    func load(_ published: PublishedModel) throws -> ServingModel {
        // The row is not sealed: a count no trainer writes is refused before it sizes anything.
        guard (1...Self.maximumParts).contains(published.parts) else {
            throw CoreError(.internal, "model_unreadable", "the published model claims \(published.parts) parts")
        }
        let keys = self.keys
        let bytes = try store.readBlocking { tx -> [UInt8] in
            let owner = DataKeyOwner(token: published.version, use: .model)
            guard let open = try keys.opener(for: owner, in: tx) else { throw Self.retired }
            var bytes: [UInt8] = []
            for index in 0..<published.parts {
                guard let part = try tx.modelPart(version: published.version, index: index) else { throw Self.retired }
                bytes += try open(part, address(published.version, index))
            }
            return bytes
        }
        return try ServingModel(encoded: bytes)
    }

    /// 8 MiB parts: up to 64 GiB.
    static let maximumParts = 8192
    static let retired = CoreError(.conflict, "model_retired", "the published model was replaced while it was read")

    private func address(_ version: String, _ index: Int) -> RowAddress {
        RowAddress(table: .models, row: "\(version)/\(index)", owner: DataKeyOwner(token: version, use: .model))
    }
}
