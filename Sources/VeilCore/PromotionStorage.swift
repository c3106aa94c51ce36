import Foundation
import Persistence
import Serving
import Storage

extension PromotionBandits {
    /// Bandits for `campaigns`, each restored from what `store` saved when it fits, otherwise cold.
    public convenience init(campaigns: [Campaign], store: any OperationalStore) throws {
        self.init(campaigns: campaigns, saved: try store.readBlocking { try $0.savedBandits() })
    }

    /// Writes the bandits that changed since the last save to `store`.
    public func save(to store: any OperationalStore, at date: Date) throws {
        try saveChanged { rows in
            try store.writeBlocking { tx in
                for row in rows { try tx.saveBandit(campaign: row.campaign, state: row.state, at: Int64(date.timeIntervalSince1970)) }
            }
        }
    }
}

extension VeilService {
    /// Saves the promotion bandits that learnt since the last save (every few seconds and at shutdown).
    public func savePromotionBandits() async throws {
        let (promotions, store, at) = (self.promotions, self.store, now())
        try await offThePool { try promotions.save(to: store, at: at) }
    }

    /// Writes the experiments' exposure and outcome counts gathered since the last flush.
    public func flushExperimentCounts() async throws { try await experiments.flush(to: store) }
}
