import ArgumentParser
import FeatureStore
import Foundation
import Recommender
import Serving
import Storage
import VeilCore

extension BenchCommand {
    struct Scale: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "How training time and peak memory grow with the catalog and the data: each model fitted on generated shops of growing size (taste clusters, long-tailed popularity, items bought in sequence), with NDCG@10 on each subject's held-out last fifth, one-at-a-time uncached scoring latency, and the fitted growth exponents."
        )
        @Option(help: "Sizes as ITEMSxSUBJECTS, comma-separated.") var sizes = "1000x10000,10000x100000"
        @Option(help: "Mean interactions per subject (exponentially distributed, at least 3).") var perSubject = 20
        @Option(
            help:
                "Models, comma-separated, from: \(ModelCatalog.names.joined(separator: ", ")); and `server`: the model the gateway trains (the hybrid with its blend searched, neighbours, sessions and their weight, behaviour segments, age bands imputed for the 40% of subjects without one), from a feature-store snapshot of the shop."
        )
        var models = "popularity,als,item-knn,ease,hybrid,server"
        @Option var threads = 2
        @Option(help: "How many of the most interacted-with items EASE models.") var easeMaxItems = EASE.defaultMaxItems
        @Option(help: "Subjects whose lists are evaluated and timed one at a time.") var sampleSubjects = 1000
        @Option var seed: UInt64 = 7

        func parsedSizes() throws -> [(items: Int, subjects: Int)] {
            try sizes.split(separator: ",").map { part in
                let numbers = part.split(separator: "x").compactMap { Int($0) }
                guard numbers.count == 2, numbers[0] >= 100, numbers[1] >= 100 else {
                    throw ValidationError("--sizes takes ITEMSxSUBJECTS pairs (each at least 100), e.g. 1000x10000,10000x100000")
                }
                return (numbers[0], numbers[1])
            }
        }

        func validate() throws {
            _ = try parsedSizes()
            guard perSubject >= 3, threads >= 1, easeMaxItems >= 1, sampleSubjects >= 10 else {
                throw ValidationError("--per-subject must be at least 3, --threads and --ease-max-items at least 1, --sample-subjects at least 10")
            }
            for name in models.split(separator: ",") where !ModelCatalog.names.contains(String(name)) && name != Self.server {
                throw ValidationError("unknown model '\(name)'; choose from: \((ModelCatalog.names + [Self.server]).joined(separator: ", "))")
            }
        }

        static let server = "server"

        struct Row {
            let items: Int, subjects: Int, interactions: Int, model: String
            let fitSeconds: Double, peakBytes: Int, ndcg: Double, p50: Double, p99: Double
        }

        func run() throws {
            let names = models.split(separator: ",").map(String.init)
            let progress = TerminalProgress("bench scale")
            var rows: [Row] = []
            emit("| items | subjects | interactions | model | fit s | peak memory GB | NDCG@10 | score p50 ms | score p99 ms |")
            emit("|---|---|---|---|---|---|---|---|---|")
            for size in try parsedSizes() {
                let shop = SyntheticShop(items: size.items, subjects: size.subjects, perSubject: perSubject, seed: seed)
                var options = ModelCatalog.Options()
                options.threads = threads
                options.easeMaxItems = easeMaxItems
                options.progress = progress.reporter
                func record(_ name: String, _ fit: Duration, peak: Int, _ scores: (ndcg: Double, p50: Double, p99: Double), interactions: Int) {
                    let row = Row(
                        items: size.items, subjects: size.subjects, interactions: interactions, model: name, fitSeconds: fit.seconds,
                        peakBytes: peak, ndcg: scores.ndcg, p50: scores.p50, p99: scores.p99)
                    rows.append(row)
                    emit(
                        "| \(row.items) | \(row.subjects) | \(row.interactions) | \(name) | \(fmt(row.fitSeconds, 2)) | \(fmt(Double(peak) / 1e9, 2)) | \(fmt(row.ndcg)) | \(fmt(row.p50, 2)) | \(fmt(row.p99, 2)) |"
                    )
                }
                let models = names.filter { $0 != Self.server }
                if !models.isEmpty {
                    progress.reporter.phase("shop \(size.items)x\(size.subjects)", "generate")
                    let split = shop.split()
                    // Time-dependent scores are fixed at the data's latest moment, as the gateway serves them.
                    let latest = split.referenceTimes.max() ?? 0
                    for name in models {
                        ProcessMemory.resetPeak()
                        let start = ContinuousClock.now
                        let fitted = try ModelCatalog.fit(name, on: split, options: options)
                        let model =
                            (fitted as? HybridModel)?.precomputing(at: latest) ?? (fitted as? TrendingModel)?.precomputing(at: latest) ?? fitted
                        let took = ContinuousClock.now - start
                        let peak = ProcessMemory.peak()
                        progress.reporter.phase(name, "score \(sampleSubjects) subjects")
                        record(
                            name, took, peak: peak, evaluate(model, on: split, relevant: split.relevant, at: latest),
                            interactions: split.trainMatrix.nonZeroCount)
                    }
                }
                if names.contains(Self.server) {
                    // The process holds what a server would (the snapshot, then the model with its training data) and
                    // the held-out items; not the generated split, which would count twice.
                    progress.reporter.phase("shop \(size.items)x\(size.subjects)", "generate a feature-store snapshot")
                    let (data, relevant, latest) = { () -> ((snapshot: TrainingSnapshot, catalog: [CatalogItem]), [Set<Int32>], Int64) in
                        let split = shop.split()
                        return (shop.featureStoreSnapshot(of: split), split.relevant, split.referenceTimes.max() ?? 0)
                    }()
                    var serving = ServingOptions()
                    serving.easeMaxItems = easeMaxItems
                    serving.segmentsForCampaigns = true
                    ProcessMemory.resetPeak()
                    let start = ContinuousClock.now
                    let served = ServingModel.train(
                        snapshot: data.snapshot, catalog: data.catalog, options: serving, threads: threads,
                        now: Date(timeIntervalSince1970: TimeInterval(latest)), progress: progress.reporter)
                    let took = ContinuousClock.now - start
                    let peak = ProcessMemory.peak()
                    // Scored with the shop's item and subject indices, which the snapshot keeps.
                    guard served.items == data.snapshot.items, let trained = served.trainingSplit,
                        trained.users == data.snapshot.tokens.map(\.rawValue), trained.users.count == relevant.count
                    else {
                        throw CLIError(message: "the served model reordered the shop's items or subjects")
                    }
                    progress.reporter.phase(Self.server, "score \(sampleSubjects) subjects")
                    record(
                        Self.server, took, peak: peak, evaluate(served.ranker, on: trained, relevant: relevant, at: latest),
                        interactions: trained.trainMatrix.nonZeroCount)
                }
            }
            progress.finish("\(rows.count) fits")
            printExponents(rows, names: names)
        }

        /// NDCG@10 over a fixed sample of subjects, each list computed alone (score every item, top 10 of the unseen) at
        /// the serving time `now`, as the gateway computes an uncached list, and the latency of doing so.
        func evaluate(
            _ model: any ScoringModel, on split: EvaluationSplit, relevant held: [Set<Int32>], at now: Int64
        ) -> (
            ndcg: Double, p50: Double, p99: Double
        ) {
            var rng = SeededGenerator(seed: seed)
            let candidates = (0..<split.users.count).filter { !held[$0].isEmpty }
            let sample = (0..<min(sampleSubjects, candidates.count)).map { _ in candidates[Int(rng.next() % UInt64(candidates.count))] }
            var scores = [Float](repeating: 0, count: model.itemCount)
            var seen = [Bool](repeating: false, count: model.itemCount)
            var lists: [[Int32]] = [], relevant: [Set<Int32>] = [], latencies: [Double] = []
            for u in sample {
                let start = ContinuousClock.now
                var context = split.context(forUser: u)
                context.time = now
                for i in context.items { seen[Int(i)] = true }
                let top = scores.withUnsafeMutableBufferPointer { s in
                    model.score(context, into: s)
                    return TopK.select(scores: UnsafeBufferPointer(s), k: 10) { seen[$0] }.items
                }
                for i in context.items { seen[Int(i)] = false }
                latencies.append((ContinuousClock.now - start).seconds * 1000)
                lists.append(top)
                relevant.append(held[u])
            }
            latencies.sort()
            let ndcg = RankingMetrics.compute(recommendations: lists, relevant: relevant, k: 10, catalogSize: split.items.count).ndcg
            return (ndcg, latencies[latencies.count / 2], latencies[min(latencies.count - 1, latencies.count * 99 / 100)])
        }

        /// Time ∝ interactionsᵏ between consecutive sizes (items and subjects grow with them in the default sizes).
        func printExponents(_ rows: [Row], names: [String]) {
            let sizes = Array(Set(rows.map(\.interactions))).sorted()
            guard sizes.count >= 2 else { return }
            emit(
                "\n| model | " + zip(sizes, sizes.dropFirst()).map { "time exponent \($0)→\($1)" }.joined(separator: " | ")
                    + " | " + zip(sizes, sizes.dropFirst()).map { "memory exponent \($0)→\($1)" }.joined(separator: " | ") + " |")
            emit("|---|" + String(repeating: "---|", count: 2 * (sizes.count - 1)))
            for name in names {
                let mine = sizes.compactMap { n in rows.first { $0.model == name && $0.interactions == n } }
                guard mine.count == sizes.count else { continue }
                let pairs = zip(mine, mine.dropFirst())
                let time = pairs.map { a, b in
                    fmt(log(max(b.fitSeconds, 1e-4) / max(a.fitSeconds, 1e-4)) / log(Double(b.interactions) / Double(a.interactions)), 2)
                }
                let memory = pairs.map { a, b in
                    fmt(log(Double(b.peakBytes) / Double(a.peakBytes)) / log(Double(b.interactions) / Double(a.interactions)), 2)
                }
                emit("| \(name) | " + (time + memory).joined(separator: " | ") + " |")
            }
        }
    }
}

/// Writes a line at once (a long benchmark's rows appear as they are measured, also through a pipe).
private func emit(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

/// A generated shop for scale measurements: items in categories of long-tailed popularity, subjects with one to three
/// favourite categories, and items often bought after their predecessor in the category (so item-to-item models have
/// something to find), in visits of a few items. Each subject's last fifth is held out.
struct SyntheticShop {
    let items: Int, subjects: Int, perSubject: Int, seed: UInt64

    func split() -> EvaluationSplit {
        var rng = SeededGenerator(seed: seed)
        let categories = max(8, items / 250)
        // Popularity falls with the index (1/(i+20)^0.9); category c holds items c, c+C, c+2C, …
        let weight = (0..<items).map { 1 / pow(Double($0) + 20, 0.9) }
        let global = cumulative(weight)
        let members = (0..<categories).map { c in Array(stride(from: c, to: items, by: categories)) }
        let perCategory = members.map { cumulative($0.map { weight[$0] }) }
        var train: [Interaction] = [], test: [Interaction] = []
        train.reserveCapacity(subjects * perSubject * 4 / 5)
        for u in 0..<subjects {
            let tastes = (0..<(1 + Int(rng.next() % 3))).map { _ in Int(rng.next() % UInt64(categories)) }
            let wanted = min(max(3, Int(-log(max(Double(rng.nextFloat()), 1e-9)) * Double(perSubject))), min(items / 2, 500))
            var chosen: [Int32] = [], taken = Set<Int32>()
            var previous = -1
            while chosen.count < wanted {
                let item: Int
                if previous >= 0, rng.nextFloat() < 0.3, previous + categories < items {
                    item = previous + categories
                } else if rng.nextFloat() < 0.75 {
                    let c = tastes[Int(rng.next() % UInt64(tastes.count))]
                    item = members[c][sample(perCategory[c], &rng)]
                } else {
                    item = sample(global, &rng)
                }
                previous = item
                if taken.insert(Int32(item)).inserted { chosen.append(Int32(item)) }
            }
            let held = max(1, chosen.count / 5)
            for (j, item) in chosen.enumerated() {
                // Visits of four items two minutes apart, three days between visits.
                let time = 1_700_000_000 + Int64(u) + Int64(j / 4) * 3 * 86_400 + Int64(j % 4) * 120
                let x = Interaction(user: Int32(u), item: item, weight: 1, time: time)
                if j < chosen.count - held { train.append(x) } else { test.append(x) }
            }
        }
        return EvaluationSplit(users: subjects, items: items, train: train, test: test)
    }

    /// The training part as the gateway's feature store would hand it to training: keyed tokens, items in index
    /// order, anonymous counts, a purchase count, and a profile (age band, region, device) for 60% of subjects, the
    /// age band following the product type the subject first chose (so that behaviour can impute the rest); and a
    /// catalog of 20 product types with brands, prices and sale tags.
    func featureStoreSnapshot(of split: EvaluationSplit) -> (snapshot: TrainingSnapshot, catalog: [CatalogItem]) {
        let categories = max(8, items / 250)
        let bands = ["18-24", "25-34", "35-44", "45-54", "55-64"]
        var rng = SeededGenerator(seed: seed ^ 0x5EED)
        let tokens = (0..<split.users.count).map { _ in
            SubjectToken(digest: [rng.next(), rng.next()].flatMap { word in (0..<8).map { UInt8(truncatingIfNeeded: word >> ($0 * 8)) } })
        }
        var counts = [Float](repeating: 0, count: items)
        var first = [Int](repeating: -1, count: split.users.count), purchases = [Int](repeating: 0, count: split.users.count)
        for x in split.train {
            counts[Int(x.item)] += 1
            if first[Int(x.user)] < 0 { first[Int(x.user)] = Int(x.item) % categories }
            if x.item % 4 == 0 { purchases[Int(x.user)] += 1 }
        }
        let profiles = (0..<split.users.count).map { u -> [String: String] in
            guard rng.nextFloat() < 0.6 else { return [:] }
            return [
                "age_band": bands[max(first[u], 0) % 20 % bands.count], "location": "region-\(u % 7)",
                "device": u % 3 == 0 ? "mobile" : "desktop",
            ]
        }
        let snapshot = TrainingSnapshot(
            tokens: tokens, items: split.items, interactions: split.train.map { ($0.user, $0.item, $0.weight, $0.time) },
            anonymousCounts: counts, profiles: profiles, purchases: purchases)
        let catalog = split.items.indices.map { i in
            let c = i % categories
            return CatalogItem(
                id: split.items[i], title: "Item \(i)", category: "type-\(c % 20)/category-\(c)", brand: "brand-\(i % 97)",
                price: 5 + Double(i * 7919 % 500), tags: i % 10 == 0 ? ["sale"] : [])
        }
        return (snapshot, catalog)
    }

    private func cumulative(_ weights: [Double]) -> [Double] {
        var sum = 0.0
        return weights.map {
            sum += $0; return sum
        }
    }

    private func sample(_ cumulative: [Double], _ rng: inout SeededGenerator) -> Int {
        let x = Double(rng.nextFloat()) * cumulative[cumulative.count - 1]
        var lo = 0, hi = cumulative.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if cumulative[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
