import Foundation

/// A generated shop for the demo and the tests: a catalog whose product types differ, users with demographics
/// and latent tastes, and sessions of page views, searches, purchases and feedback with weekly seasonality
/// and a promotion period. Deterministic for a seed.
public struct SampleShop: Sendable {
    public struct Item: Codable, Sendable, Equatable {
        public var id: String
        public var title: String
        public var category: String
        public var brand: String?
        public var price: Double
        public var available: Bool
        public var attributes: [String: String]
        public var tags: [String]
    }

    public struct User: Sendable, Equatable {
        public var id: String
        public var age: Int
        public var gender: String
        public var location: String
        public var device: String
        /// The two categories this user mostly shops in (latent taste, for evaluation).
        public var tastes: [String]
        /// How this user shops (latent, for evaluating segments): regular, bargain, premium or trend.
        public var style: String
    }

    /// One event in the wire format of `POST /v1/events`.
    public struct Event: Codable, Sendable, Equatable {
        public var id: String
        public var kind: String
        public var subject: String
        public var timestamp: String
        public var source: String
        public var item: String?
        public var dwell_ms: Double?
        public var scroll_depth: Double?
        public var referrer: String?
        public var device: String?
        public var order: String?
        public var lines: [Line]?
        public var query: String?
        public var clicked: [Click]?
        public var shown: [String]?
        public var age: Int?
        public var gender: String?
        public var location: String?
        public var signal: String?
        public var value: Double?

        public struct Line: Codable, Sendable, Equatable {
            public var item: String
            public var quantity: Int
            public var unit_price: Double
            public var currency: String
        }
        public struct Click: Codable, Sendable, Equatable {
            public var item: String
            public var position: Int
        }
    }

    public var items: [Item] = []
    public var users: [User] = []
    public var events: [Event] = []
    /// Item ids on promotion, and the promotion's day range.
    public var promoted: [String] = []
    public var promotionDays: Range<Int> = 0..<0

    static let categories: [(path: String, brands: [String], nouns: [String])] = [
        ("apparel/shoes", ["Stride", "Kicks", "Trail"], ["Runner", "Sneaker", "Boot", "Loafer"]),
        ("apparel/shirts", ["Weave", "Cotton Co"], ["Tee", "Oxford", "Polo", "Flannel"]),
        ("electronics/phones", ["Nova", "Pixelo"], ["Phone", "Phone Pro", "Phone Mini"]),
        ("electronics/audio", ["Sonic", "Hush"], ["Earbuds", "Headphones", "Speaker"]),
        ("home/kitchen", ["Chef", "Ferro"], ["Pan", "Knife", "Kettle", "Grinder"]),
        ("books/fiction", ["Quill Press"], ["Novel", "Thriller", "Saga"]),
        ("sports/outdoor", ["Summit", "Drift"], ["Tent", "Backpack", "Jacket", "Bottle"]),
    ]
    static let regions = ["DE-BY", "DE-BE", "FR-IDF", "US-CA", "US-NY", "GB-LND", "ES-MD"]
    static let devices = [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)", "Mozilla/5.0 (Windows NT 10.0; Win64)", "Mozilla/5.0 (iPad; CPU OS 16_0)",
        "Mozilla/5.0 (Linux; Android 14)",
    ]
    static let colors = ["black", "white", "navy", "red", "olive"]
    public static let styles = ["regular", "bargain", "premium", "trend"]

    /// Generates a shop. Day 0 is `start`; weekends have more sessions; days 40%–55% of the range are a promotion.
    public init(users userCount: Int, items itemCount: Int, days: Int, seed: UInt64, start: Date = Date(timeIntervalSince1970: 1_790_000_000)) {
        var rng = SampleRandom(seed: seed)
        for n in 0..<itemCount { items.append(Self.makeItem(n, &rng)) }
        let byCategory = Dictionary(grouping: items.indices, by: { items[$0].category })
        // What each style reaches for, per category: clearance items, the dearest quarter, new arrivals.
        var styled: [String: [String: [Int]]] = [:]
        for (category, pool) in byCategory {
            let dear = pool.sorted { items[$0].price > items[$1].price }.prefix(max(pool.count / 4, 1))
            styled[category] = [
                "bargain": pool.filter { items[$0].tags.contains("clearance") }, "premium": Array(dear),
                "trend": pool.filter { items[$0].tags.contains("new") },
            ]
        }
        for n in 0..<userCount { users.append(Self.makeUser(n, &rng)) }
        promotionDays = (days * 2 / 5)..<max(days * 2 / 5 + 1, days * 11 / 20)
        promoted = stride(from: 0, to: items.count, by: 17).map { items[$0].id }
        let formatter = ISO8601DateFormatter()
        var eventNumber = 0
        func nextID() -> String {
            eventNumber += 1
            return "evt-\(seed)-\(eventNumber)"
        }
        for user in users {
            events.append(
                Event(
                    id: nextID(), kind: "profile", subject: user.id, timestamp: formatter.string(from: start), source: "app",
                    device: user.device, age: user.age, gender: user.gender, location: user.location))
            for day in 0..<days {
                let weekday = (day + 4) % 7
                let sessionChance = weekday >= 5 ? 0.35 : 0.2
                guard rng.unit() < sessionChance else { continue }
                var time = start.addingTimeInterval(Double(day) * 86_400 + Double(8 + rng.below(14)) * 3600)
                let category = rng.unit() < 0.85 ? user.tastes[rng.below(2)] : Self.categories[rng.below(Self.categories.count)].path
                let pool = byCategory[category] ?? Array(items.indices)
                if rng.unit() < 0.3 {
                    let shown = (0..<5).map { _ in items[pool[rng.zipf(pool.count)]].id }
                    let query = "<b>\(category.split(separator: "/").last!)</b> \(Self.colors[rng.below(Self.colors.count)])"
                    events.append(
                        Event(
                            id: nextID(), kind: "search", subject: user.id, timestamp: formatter.string(from: time), source: "web",
                            query: query, clicked: [Event.Click(item: shown[0], position: 1)], shown: shown))
                    time += 20
                }
                var viewed: [String] = []
                for _ in 0..<(2 + rng.below(6)) {
                    var index = pool[rng.zipf(pool.count)]
                    if let favourites = styled[category]?[user.style], !favourites.isEmpty, rng.unit() < 0.6 {
                        index = favourites[rng.below(favourites.count)]
                    }
                    if promotionDays.contains(day), rng.unit() < 0.3 {
                        index = stride(from: 0, to: items.count, by: 17).map { $0 }[rng.below(promoted.count)]
                    }
                    let item = items[index].id
                    viewed.append(item)
                    events.append(
                        Event(
                            id: nextID(), kind: "page_view", subject: user.id, timestamp: formatter.string(from: time), source: "web",
                            item: item, dwell_ms: Double(2000 + rng.below(60_000)), scroll_depth: (rng.unit() * 100).rounded() / 100,
                            referrer: ["https://www.google.com/", "direct", "https://instagram.com/"][rng.below(3)], device: user.device))
                    time += Double(30 + rng.below(240))
                }
                if rng.unit() < (promotionDays.contains(day) ? 0.35 : 0.2), let item = viewed.last, let it = items.first(where: { $0.id == item }) {
                    events.append(
                        Event(
                            id: nextID(), kind: "purchase", subject: user.id, timestamp: formatter.string(from: time), source: "app",
                            order: "o-\(eventNumber)", lines: [Event.Line(item: item, quantity: 1, unit_price: it.price, currency: "eur")]))
                    if rng.unit() < 0.5 {
                        events.append(
                            Event(
                                id: nextID(), kind: "feedback", subject: user.id, timestamp: formatter.string(from: time + 86_400), source: "app",
                                item: item, signal: "rating", value: Double(3 + rng.below(3))))
                    }
                }
            }
        }
    }

    /// Item `n`: its category by turn, brand, attributes, price and tags drawn from `rng`.
    static func makeItem(_ n: Int, _ rng: inout SampleRandom) -> Item {
        let c = Self.categories[n % Self.categories.count]
        let brand = c.brands[rng.below(c.brands.count)]
        let noun = c.nouns[rng.below(c.nouns.count)]
        var attributes: [String: String] = [:]
        var price = 10 + rng.unit() * 90
        if c.path.hasPrefix("apparel") {
            attributes = [
                "size": ["S", "M", "L", "XL"][rng.below(4)], "color": Self.colors[rng.below(Self.colors.count)],
                "style": ["casual", "sport", "formal"][rng.below(3)],
            ]
        } else if c.path.hasPrefix("electronics") {
            attributes = [
                "storage_gb": ["64", "128", "256"][rng.below(3)], "battery_h": String(8 + rng.below(30)),
                "wireless": rng.unit() < 0.7 ? "yes" : "no",
            ]
            price *= 8
        } else {
            attributes = ["material": ["steel", "paper", "nylon", "cast iron"][rng.below(4)]]
        }
        // Every tenth item from the third is on clearance (cheaper); from the seventh, a new arrival.
        var tags = [String(c.path.split(separator: "/").last!), noun.lowercased()]
        if n % 10 == 3 { tags.append("clearance"); price *= 0.6 }
        if n % 10 == 7 { tags.append("new") }
        return Item(
            id: String(format: "sku-%04d", n), title: "\(brand) \(noun) \(n)", category: c.path, brand: brand,
            price: (price * 100).rounded() / 100, available: rng.unit() > 0.03, attributes: attributes, tags: tags)
    }

    /// User `n`: two favourite categories, a style by turn, and a profile drawn from `rng`.
    static func makeUser(_ n: Int, _ rng: inout SampleRandom) -> User {
        let first = Self.categories[rng.below(Self.categories.count)].path
        var second = Self.categories[rng.below(Self.categories.count)].path
        if second == first { second = Self.categories[(Self.categories.firstIndex { $0.path == first }! + 1) % Self.categories.count].path }
        return User(
            id: "user-\(n)@example.com", age: 18 + rng.below(55), gender: ["f", "m", "x"][rng.below(3)],
            location: Self.regions[rng.below(Self.regions.count)], device: Self.devices[rng.below(Self.devices.count)],
            tastes: [first, second],
            style: Self.styles[n % Self.styles.count])
    }
}

/// SplitMix64 for the generator (independent of the recommender's, so the two modules stay apart).
struct SampleRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed ^ 0x5DEE_CE66_D1CE_4E5B }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    /// A Zipf-like index in 0..<n (rank r with probability ∝ 1/(r+1)).
    mutating func zipf(_ n: Int) -> Int {
        let h = (1...max(n, 1)).reduce(0.0) { $0 + 1 / Double($1) }
        var u = unit() * h
        for r in 0..<n {
            u -= 1 / Double(r + 1)
            if u <= 0 { return r }
        }
        return n - 1
    }
}
