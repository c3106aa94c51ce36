import Foundation
import Recommender
import Synchronization

/// A promotion from the configuration file: which items, when, for whom, and how strongly at most.
public struct Campaign: Sendable, Equatable {
    /// Named seasonal events a campaign can be triggered by, resolved per year.
    public enum Trigger: String, Sendable, CaseIterable {
        case blackFriday = "black-friday"
        case cyberMonday = "cyber-monday"
        case backToSchool = "back-to-school"
        case christmas

        /// The UTC day range of the event in `year`.
        public func range(year: Int) -> Range<Date> {
            var calendar = Calendar(identifier: .gregorian)
            calendar.timeZone = TimeZone(identifier: "UTC")!
            func day(_ m: Int, _ d: Int) -> Date { calendar.date(from: DateComponents(year: year, month: m, day: d))! }
            // Thanksgiving: the fourth Thursday of November.
            let first = day(11, 1)
            let weekday = calendar.component(.weekday, from: first)  // 1 = Sunday … 5 = Thursday
            let thanksgiving = 1 + (5 - weekday + 7) % 7 + 21
            switch self {
            case .blackFriday: return day(11, thanksgiving + 1)..<day(11, thanksgiving + 2)
            case .cyberMonday: return day(11, thanksgiving + 4)..<day(11, thanksgiving + 5)
            case .backToSchool: return day(8, 15)..<day(9, 16)
            case .christmas: return day(12, 1)..<day(12, 25)
            }
        }
    }

    public var name: String
    public var items: Set<String>
    /// Items carrying any of these tags are promoted too.
    public var tags: Set<String>
    public var start: Date?
    public var end: Date?
    public var trigger: Trigger?
    /// Segment names (as `veil segments` prints them) the campaign targets; empty targets everyone.
    public var segments: Set<String>
    /// The largest boost, in standard deviations of the subject's scores; the bandit picks a share of it.
    public var maxBoost: Float

    public init(
        name: String, items: Set<String> = [], tags: Set<String> = [], start: Date? = nil, end: Date? = nil, trigger: Trigger? = nil,
        segments: Set<String> = [], maxBoost: Float = 1
    ) {
        self.name = name
        self.items = items
        self.tags = tags
        self.start = start
        self.end = end
        self.trigger = trigger
        self.segments = segments
        self.maxBoost = maxBoost
    }

    /// The running window containing `date`, if any.
    public func window(at date: Date) -> Range<Date>? {
        if let trigger {
            let year = Calendar(identifier: .gregorian).component(.year, from: date)
            let range = trigger.range(year: year)
            return range.contains(date) ? range : nil
        }
        let range = (start ?? .distantPast)..<(end ?? .distantFuture)
        return range.contains(date) ? range : nil
    }
}

/// The context a promotion decision sees: time features and, with marketing consent, segment and device class.
public struct PromotionContext: Sendable, Equatable {
    public var weekend: Bool
    public var evening: Bool
    public var holiday: Bool
    /// 0 at the campaign's start, 1 at its end.
    public var campaignProgress: Double
    public var device: String?
    public var segment: Int?

    public static let segmentSlots = 8

    /// Day of week and hour in UTC; holidays are the named events and 24–26 December and 1 January.
    public init(at date: Date, window: Range<Date>, device: String?, segment: Int?) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.weekday, .hour, .month, .day, .year], from: date)
        weekend = parts.weekday == 1 || parts.weekday == 7
        evening = (18...23).contains(parts.hour ?? 0)
        let fixed = (parts.month == 12 && (24...26).contains(parts.day ?? 0)) || (parts.month == 1 && parts.day == 1)
        holiday = fixed || Campaign.Trigger.allCases.contains { $0.range(year: parts.year ?? 2026).contains(date) }
        let length = window.upperBound.timeIntervalSince(window.lowerBound)
        campaignProgress = length.isFinite && length > 0 && length < 1e9 ? min(max(date.timeIntervalSince(window.lowerBound) / length, 0), 1) : 0.5
        self.device = device
        self.segment = segment
    }

    /// [1, weekend, evening, holiday, progress, mobile, tablet, desktop, segment one-hot…].
    public var vector: [Double] {
        var x: [Double] = [
            1, weekend ? 1 : 0, evening ? 1 : 0, holiday ? 1 : 0, campaignProgress,
            device == "mobile" ? 1 : 0, device == "tablet" ? 1 : 0, device == "desktop" ? 1 : 0,
        ]
        var slots = [Double](repeating: 0, count: Self.segmentSlots)
        if let segment { slots[segment % Self.segmentSlots] = 1 }
        x += slots
        return x
    }
}

/// One LinUCB bandit per campaign choosing the boost level; rewarded by clicks, add-to-carts and purchases of
/// promoted items that follow an exposure within half an hour (an exposure counts at once; no reward is 0).
///
/// No I/O: what each bandit learnt comes in as the bytes saved before (``init(campaigns:saved:)``) and goes out
/// through ``saveChanged(_:)``, which the core writes to the operational database (`promotion_bandits`: one row per
/// campaign, aggregates over context vectors of time, device class and segment, no tokens) every few seconds and
/// at shutdown. Exposures still waiting for their reward name subject tokens and stay in memory only: a restart
/// forgets them, so rewards for exposures made before it are not counted.
public final class PromotionBandits: Sendable {
    /// Shares of the campaign's maximum boost the bandit chooses from.
    public static let levels: [Float] = [0, 0.25, 0.5, 0.75, 1]
    static let attributionWindow: TimeInterval = 1800
    static let alpha = 0.5

    struct Exposure {
        var campaign: String
        var arm: Int
        var context: [Double]
        var items: Set<String>
        var at: Date
    }

    private struct State {
        var bandits: [String: LinUCB]
        var pending: [String: Exposure] = [:]
        /// Campaigns whose bandit changed since it was last saved.
        var unsaved: Set<String> = []
    }

    public let campaigns: [Campaign]
    /// Campaigns whose saved bandit did not fit the current one (another context or arm count) and started cold.
    public let discarded: [String]
    private let state: Mutex<State>
    private let saving = Mutex(())

    /// Bandits for `campaigns`, each restored from its `saved` state (by campaign) when that fits, otherwise cold.
    public init(campaigns: [Campaign], saved: [String: [UInt8]] = [:]) {
        self.campaigns = campaigns
        let dimension = PromotionContext(
            at: Date(timeIntervalSince1970: 0), window: Date(timeIntervalSince1970: 0)..<Date(timeIntervalSince1970: 1),
            device: nil, segment: nil
        ).vector.count
        let cold = LinUCB(arms: Self.levels.count, dimension: dimension, alpha: Self.alpha)
        var bandits: [String: LinUCB] = [:]
        var discarded: [String] = []
        for c in campaigns {
            bandits[c.name] = cold
            guard let data = saved[c.name] else { continue }
            if let restored = try? JSONDecoder().decode(LinUCB.self, from: Data(data)), restored.fits(cold) {
                bandits[c.name] = restored
            } else {
                discarded.append(c.name)
            }
        }
        self.discarded = discarded
        state = Mutex(State(bandits: bandits))
    }

    /// Chooses the boost of `campaign` for `context` and remembers the exposure of `token` to `items`.
    public func choose(campaign: Campaign, context: PromotionContext, token: String, items: Set<String>, at: Date) -> Float {
        let x = context.vector
        return state.withLock { s in
            for (key, e) in s.pending where at.timeIntervalSince(e.at) > Self.attributionWindow { s.pending[key] = nil }
            guard let arm = s.bandits[campaign.name]?.choose(x) else { return 0 }
            s.bandits[campaign.name]?.observe(arm: arm, context: x)
            s.unsaved.insert(campaign.name)
            s.pending[token + "|" + campaign.name] = Exposure(campaign: campaign.name, arm: arm, context: x, items: items, at: at)
            return Self.levels[arm] * campaign.maxBoost
        }
    }

    /// Forgets the exposures still awaiting a reward that name `token` (a withdrawal or an erasure).
    public func forget(token: String) {
        let prefix = token + "|"
        state.withLock { s in s.pending = s.pending.filter { !$0.key.hasPrefix(prefix) } }
    }

    /// Exposures of `token` still awaiting a reward (what the bandits hold about a subject, for a test or a record).
    public func pendingExposures(of token: String) -> Int {
        let prefix = token + "|"
        return state.withLock { s in s.pending.keys.filter { $0.hasPrefix(prefix) }.count }
    }

    /// A click, add-to-cart or purchase of `item` by `token`: rewards the exposure that showed it.
    public func reward(token: String, item: String, at: Date) {
        state.withLock { s in
            for campaign in campaigns {
                let key = token + "|" + campaign.name
                guard let e = s.pending[key], e.items.contains(item), at.timeIntervalSince(e.at) <= Self.attributionWindow else { continue }
                s.bandits[e.campaign]?.reward(arm: e.arm, context: e.context, reward: 1)
                s.unsaved.insert(e.campaign)
                s.pending[key] = nil
            }
        }
    }

    /// How often each boost level was learned from, per campaign (for tests and metrics).
    public func pulls(_ campaign: String) -> [Int] { state.withLock { $0.bandits[campaign]?.pulls ?? [] } }

    /// Hands the bandits that changed since the last save to `write` as (campaign, encoded state); if it throws they
    /// stay marked for the next one. Saves run one at a time, so an older snapshot never overwrites a newer one (the
    /// periodic save may still be running when the shutdown's starts).
    public func saveChanged(_ write: ([(campaign: String, state: [UInt8])]) throws -> Void) throws {
        try saving.withLock { _ in
            let changed = state.withLock { s -> [(String, LinUCB)] in
                defer { s.unsaved.removeAll() }
                return s.unsaved.compactMap { name in s.bandits[name].map { (name, $0) } }
            }
            guard !changed.isEmpty else { return }
            do {
                let encoder = JSONEncoder()
                try write(try changed.map { (campaign: $0.0, state: Array(try encoder.encode($0.1))) })
            } catch {
                state.withLock { s in for (name, _) in changed { s.unsaved.insert(name) } }
                throw error
            }
        }
    }
}
