import ArgumentParser
import Foundation
import Serving
import VeilCore
import Gateway
import Ingestion
import Logging
import Recommender
import Vault

extension BenchCommand {
    struct Unlearn: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Unlearning subjects against retraining without them: per model on MovieLens 100K and on the sample shop (time for 1 and for a batch of subjects, NDCG@10 of both), then the gateway's served model."
        )
        @Option(help: "MovieLens 100K directory (holding split/train.tsv and split/test.tsv).") var movielens = "../shared/data/ml-100k"
        @Option(help: "Users of the generated sample shop (through the gateway's real ingestion).") var shopUsers = 2000
        @Option(help: "Subjects removed together in the batch measurement.") var batch = 100
        @Option(help: "Runs of each timing; medians are reported.") var trials = 3
        @Option var threads = 2

        func validate() throws {
            guard trials >= 1, batch >= 1, threads >= 1, shopUsers >= 50 else {
                throw ValidationError("--trials, --batch, --threads must be ≥ 1 and --shop-users ≥ 50")
            }
        }

        static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

        func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
            let start = ContinuousClock.now
            let value = try body()
            return (value, (ContinuousClock.now - start).seconds)
        }

        func run() async throws {
            let dir = URL(fileURLWithPath: movielens).appendingPathComponent("split")
            guard let train = try? String(contentsOf: dir.appendingPathComponent("train.tsv"), encoding: .utf8),
                let test = try? String(contentsOf: dir.appendingPathComponent("test.tsv"), encoding: .utf8)
            else {
                throw ValidationError("cannot read \(dir.path)/train.tsv and test.tsv: give --movielens the MovieLens 100K directory")
            }
            print(
                "| data | model | exact | retrain s | unlearn 1 s | speed-up | unlearn \(batch) s | speed-up | NDCG@10 unlearned | NDCG@10 retrained |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|")
            let terminal = TerminalProgress("bench unlearn")
            defer { terminal.finish("done") }
            let progress = terminal.reporter
            try models(on: EvaluationSplit(train: Dataset.parseRatings(train), test: Dataset.parseRatings(test)), name: "ml-100k", progress: progress)
            let served = try await shopModel(progress: progress)
            // The shop has no test file: each subject's last fifth of interactions is held out, as for blend weights.
            let shopSplit = try require(served.trainingSplit, "the served model keeps its training data")
            try models(on: shopSplit.validationSplit(), name: "sample shop", progress: progress)
            try servedModel(served, progress: progress)
        }

        /// Removal sets drawn once per dataset: one subject, and a batch.
        func removals(_ users: Int) -> (one: Set<Int>, many: Set<Int>) {
            var rng = SeededGenerator(seed: 11)
            var many = Set<Int>()
            while many.count < min(batch, users - 1) { many.insert(Int(rng.next() % UInt64(users))) }
            return ([Int(rng.next() % UInt64(users))], many)
        }

        func models(on split: EvaluationSplit, name data: String, progress: ProgressReporter) throws {
            var options = ModelCatalog.Options()
            options.threads = threads
            let (one, many) = removals(split.users.count)
            for name in ["popularity", "trending", "item-knn", "ease", "als", "hybrid"] {
                progress.phase(data, "\(name): unlearn and retrain, \(trials) trials")
                let model = try ModelCatalog.fit(name, on: split, options: options)
                guard let unlearnable = model as? any Unlearnable else { continue }
                func refit(_ after: EvaluationSplit) throws -> any ScoringModel {
                    // The retrain keeps the hyperparameters too, so that both sides do the same work.
                    if let hybrid = model as? HybridModel {
                        return HybridTrainer(options: options).fit(after, weights: hybrid.weights, recency: hybrid.recency)
                    }
                    return try ModelCatalog.fit(name, on: after, options: options)
                }
                var unlearnOne: [Double] = [], unlearnMany: [Double] = [], retrain: [Double] = []
                var unlearned: (any ScoringModel)?, retrained: (any ScoringModel)?
                for _ in 0..<trials {
                    unlearnOne.append(timed { unlearnable.unlearning(UnlearningRequest(removing: one, from: split)) }.1)
                    let (u, t) = timed { unlearnable.unlearning(UnlearningRequest(removing: many, from: split)) }
                    unlearned = u
                    unlearnMany.append(t)
                    let after = UnlearningRequest(removing: many, from: split).after
                    let (r, s) = try timed { try refit(after) }
                    retrained = r
                    retrain.append(s)
                }
                let after = UnlearningRequest(removing: many, from: split).after
                func ndcg(_ m: (any ScoringModel)?) -> String {
                    guard let m else { return "—" }
                    return String(format: "%.4f", after.metrics(after.recommendAll(m, k: 10, threads: threads), k: 10).ndcg)
                }
                let r = Self.median(retrain), a = Self.median(unlearnOne), b = Self.median(unlearnMany)
                print(
                    String(
                        format: "| %@ | %@ | %@ | %.3f | %.4f | %.1f× | %.4f | %.1f× | %@ | %@ |", data,
                        name == "hybrid" ? "hybrid (ALS half-step)" : name == "als" ? "als (half-step)" : name,
                        unlearnable.unlearnsExactly ? "yes" : "no",
                        r, a, r / max(a, 1e-9), b, r / max(b, 1e-9), ndcg(unlearned), ndcg(retrained)))
            }
        }

        /// The sample shop through the gateway's ingestion and training: the model `veil serve` would serve.
        func shopModel(progress: ProgressReporter) async throws -> ServingModel {
            let dir = NSTemporaryDirectory() + "veil-bench-unlearn-\(UUID().uuidString.prefix(8))"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let service = try BenchCommand.service(in: dir, trainingThreads: threads)
            let shop = SampleShop(users: shopUsers, items: 1000, days: 60, seed: 1)
            progress.phase("sample shop", "ingest and train the served model")
            let app = try await service.benchPrepare(shop: shop)
            for body in try BenchCommand.batches(of: shop, size: 500) { _ = try await service.benchIngest(body: body, principal: app) }
            let model = try service.training.train()
            return model
        }

        /// The served model as the gateway unlearns it (ALS and the derived tables refitted) against a retrain with its
        /// hyperparameters kept and against the full retrain that searches them again.
        func servedModel(_ model: ServingModel, progress: ProgressReporter) throws {
            let users = try require(model.trainingSplit?.users, "the served model keeps its training data")
            let (one, many) = removals(users.count)
            let oneTokens = Set(one.map { users[$0] }), manyTokens = Set(many.map { users[$0] })
            var a: [Double] = [], b: [Double] = [], fixed: [Double] = [], full: [Double] = []
            progress.phase("served model", "unlearn and retrain, \(trials) trials")
            for _ in 0..<trials {
                a.append(timed { model.unlearning(oneTokens) }.1)
                b.append(timed { model.unlearning(manyTokens) }.1)
                fixed.append(timed { model.retrained(without: manyTokens) }.1)
                full.append(timed { model.retrained(without: manyTokens, searching: true) }.1)
            }
            print("")
            print(
                String(
                    format:
                        "served model (sample shop, %d subjects, %d item events; medians of %d): unlearn 1 subject %.3f s, unlearn %d %.3f s; retrain without them %.3f s with the hyperparameters kept, %.3f s searching them again (%.0f× and %.0f× the unlearning of %d)",
                    users.count, model.trainingSplit?.train.count ?? 0, trials, Self.median(a), many.count, Self.median(b), Self.median(fixed),
                    Self.median(full),
                    Self.median(fixed) / max(Self.median(b), 1e-9), Self.median(full) / max(Self.median(b), 1e-9), many.count))
        }
    }
}

/// `#require` for a command: a clear message instead of a crash.
private func require<T>(_ value: T?, _ message: String) throws -> T {
    guard let value else { throw ValidationError(message) }
    return value
}
