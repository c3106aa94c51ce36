import Foundation
import Testing
import Synchronization
@testable import Recommender

/// Two planted taste groups: users 0..<20 like items 0..<10, users 20..<40 like items 10..<20.
/// Each user saw 6 of their group's 10 items.
func plantedMatrix() -> (SparseMatrix, [Interaction]) {
    var interactions: [Interaction] = []
    for u in 0..<40 {
        let base = u < 20 ? 0 : 10
        for j in 0..<6 { interactions.append(Interaction(user: Int32(u), item: Int32(base + (u + j * 3) % 10), time: Int64(u * 100 + j))) }
    }
    return (SparseMatrix(users: 40, items: 20, interactions: interactions), interactions)
}

func groupPrecision(_ model: any ScoringModel, _ matrix: SparseMatrix) -> Double {
    var hits = 0, total = 0
    for u in 0..<matrix.rows {
        let context = UserContext(user: u, items: Array(matrix.columns(ofRow: u)))
        let top = model.recommend(context, k: 3)
        let group = u < 20 ? 0..<10 : 10..<20
        hits += top.items.filter { group.contains(Int($0)) }.count
        total += top.items.count
    }
    return Double(hits) / Double(total)
}

@Suite struct ModelTests {
    @Test func alsLossFallsAndPlantedStructureIsRecovered() {
        let (matrix, _) = plantedMatrix()
        var cfg = ALS.Configuration()
        cfg.factors = 2
        cfg.regularization = 0.1
        cfg.alpha = 10
        cfg.iterations = 0
        let initial = ALS(cfg).fit(matrix).loss(on: matrix)
        cfg.iterations = 1
        let one = ALS(cfg).fit(matrix).loss(on: matrix)
        cfg.iterations = 10
        let model = ALS(cfg).fit(matrix)
        let ten = model.loss(on: matrix)
        #expect(one < initial)
        #expect(ten < one)
        #expect(groupPrecision(model, matrix) > 0.95)
    }

    @Test func alsIsDeterministicForASeedAndThreadCount() {
        let (matrix, _) = plantedMatrix()
        var cfg = ALS.Configuration()
        cfg.factors = 8
        cfg.iterations = 3
        cfg.threads = 2
        let a = ALS(cfg).fit(matrix), b = ALS(cfg).fit(matrix)
        #expect(a.userFactors == b.userFactors)
        #expect(a.itemFactors == b.itemFactors)
        cfg.seed = 7
        #expect(ALS(cfg).fit(matrix).userFactors != a.userFactors)
    }

    @Test func foldInPlacesANewUserInTheRightGroupWithoutRetraining() {
        let (matrix, _) = plantedMatrix()
        var cfg = ALS.Configuration()
        cfg.factors = 4
        cfg.alpha = 10
        cfg.iterations = 10
        let model = ALS(cfg).fit(matrix)
        let newcomer = UserContext(user: nil, items: [11, 12, 13])
        let top = model.recommend(newcomer, k: 3)
        #expect(top.items.allSatisfy { (10..<20).contains($0) && ![11, 12, 13].contains($0) })
    }

    @Test func bprRanksThePlantedGroupFirstAndIsDeterministic() {
        let (matrix, _) = plantedMatrix()
        var cfg = BPR.Configuration()
        cfg.factors = 8
        cfg.learningRate = 0.05
        cfg.iterations = 200
        let model = BPR(cfg).fit(matrix)
        #expect(model.name == "bpr")
        #expect(groupPrecision(model, matrix) > 0.9)
        #expect(BPR(cfg).fit(matrix).itemFactors == model.itemFactors)
    }

    @Test func itemKNNAndEASERecoverThePlantedGroups() {
        let (matrix, _) = plantedMatrix()
        #expect(groupPrecision(ItemKNN(similarity: .cosine, neighbours: 10).fit(matrix), matrix) == 1)
        #expect(groupPrecision(ItemKNN(similarity: .bm25, neighbours: 10).fit(matrix), matrix) == 1)
        #expect(groupPrecision(EASE(regularization: 5).fit(matrix), matrix) == 1)
    }

    /// Past 4,096 items the co-occurrences are built sparse, in blocks over threads, into arrays of exactly their size:
    /// the same rows as the dense build, on any number of threads.
    @Test func sparseCooccurrencesEqualTheDenseOnesOnAnyThreads() {
        var rng = SeededGenerator(seed: 3)
        var interactions: [Interaction] = []
        for u in 0..<400 {
            // Long-tailed: low item numbers are popular, so equal row counts would not be equal work.
            var items = Set<Int32>()
            for _ in 0..<(2 + Int(rng.next() % 30)) { items.insert(Int32(pow(Double(rng.nextFloat()), 3) * 3000)) }
            for i in items { interactions.append(Interaction(user: Int32(u), item: i, weight: 1 + Float(rng.next() % 3))) }
        }
        let matrix = SparseMatrix(users: 400, items: 3000, interactions: interactions)
        let dense = Cooccurrence.denseProducts(matrix, threads: 1, as: Double.self)
        for threads in [1, 3] {
            let sparse = Cooccurrence.sparseProducts(matrix, threads: threads, as: Double.self)
            #expect(sparse.offsets == dense.offsets && sparse.indices == dense.indices && sparse.values == dense.values, "threads \(threads)")
        }
        // Whole weights and few users: the sums are kept in Float, equal to the Double ones; fractional weights keep
        // Double, as does a sum that could pass 2^24.
        let narrow = Cooccurrence(matrix, threads: 2)
        #expect(narrow.isNarrow && narrow.counts.map(Double.init) == dense.values)
        let fractional = SparseMatrix(
            users: 400, items: 3000, interactions: interactions.map { Interaction(user: $0.user, item: $0.item, weight: $0.weight + 0.5) })
        #expect(!Cooccurrence(fractional).isNarrow)
        #expect(!Cooccurrence.fitsInFloat(SparseMatrix(users: 2, items: 2, interactions: [Interaction(user: 0, item: 0, weight: 4096)])))
        let blocks = Cooccurrence.blocks(cumulativeWork: [0, 10, 10, 30, 31, 60], count: 3)
        #expect(blocks.first?.lowerBound == 0 && blocks.last?.upperBound == 5)
        #expect(zip(blocks, blocks.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound && !$0.isEmpty }, "\(blocks)")
    }

    /// A validation fit kept for scoring only scores as the full model does, and cannot unlearn.
    @Test func modelsKeptForScoringOnlyScoreTheSameAndDoNotUnlearn() {
        let (matrix, _) = plantedMatrix()
        let split = EvaluationSplit(
            users: matrix.rows, items: matrix.columns,
            train: (0..<matrix.rows).flatMap { u in
                (matrix.offsets[u]..<matrix.offsets[u + 1]).map { Interaction(user: Int32(u), item: matrix.indices[$0]) }
            }, test: [])
        let models: [any Unlearnable] = [ItemKNN().fit(matrix), EASE(regularization: 5).fit(matrix)]
        for model in models {
            let light = model.scoringOnly
            var a = [Float](repeating: 0, count: matrix.columns), b = a
            let context = UserContext(user: 0, items: [0, 1])
            a.withUnsafeMutableBufferPointer { model.score(context, into: $0) }
            b.withUnsafeMutableBufferPointer { light.score(context, into: $0) }
            #expect(a == b, "\(model.name)")
            let request = UnlearningRequest(removing: [0], from: split)
            #expect(model.unlearning(request) != nil && light.unlearning(request) == nil, "\(model.name)")
        }
    }

    /// Past `maxItems`, EASE models the most interacted-with items exactly as a fit on the catalog cut to them would,
    /// and scores every other item zero.
    @Test func easeModelsTheMostInteractedItemsWhenTheCatalogIsTooLarge() throws {
        var rng = SeededGenerator(seed: 11)
        var entries: [(row: Int32, column: Int32, value: Float)] = []
        // Item i is interacted with by about (40 - i) / 40 of the users: counts fall with the index, with noise.
        for u in 0..<60 { for i in 0..<40 where rng.nextFloat() < Float(40 - i) / 45 { entries.append((Int32(u), Int32(i), 1)) } }
        let matrix = SparseMatrix(rows: 60, columns: 40, entries: entries)
        let counts = matrix.columnCounts()
        let capped = EASE(regularization: 3, maxItems: 12).fit(matrix)
        let expected = counts.indices.sorted { counts[$0] != counts[$1] ? counts[$0] > counts[$1] : $0 < $1 }.prefix(12).sorted()
        #expect(capped.items.map(Int.init) == expected)
        // The same model fitted on a catalog of only those items.
        let index = Dictionary(uniqueKeysWithValues: expected.enumerated().map { ($1, Int32($0)) })
        let cut = SparseMatrix(
            rows: 60, columns: 12, entries: entries.compactMap { e in index[Int(e.column)].map { (e.row, $0, e.value) } })
        let reference = EASE(regularization: 3).fit(cut)
        #expect(zip(capped.weights, reference.weights).allSatisfy { abs($0 - $1) < 1e-5 })
        var scores = [Float](repeating: 1, count: 40)
        let context = UserContext(user: 0, items: Array(matrix.columns(ofRow: 0)))
        scores.withUnsafeMutableBufferPointer { capped.score(context, into: $0) }
        // The items EASE does not model rank below every item it does.
        let lowest = min(0, index.keys.map { scores[$0] }.min()!)
        for item in 0..<40 where index[item] == nil { #expect(scores[item] == lowest) }
        #expect(scores.contains { $0 != 0 })
        let outside = try #require((0..<40).first { index[$0] == nil })
        #expect(capped.strongestReason(for: Int32(outside), in: context) == nil)
    }

    /// LAPACK's Cholesky inverse on two threads: A · A⁻¹ = I for a random SPD matrix large enough to be split.
    @Test func theSolverInvertsASymmetricPositiveDefiniteMatrix() {
        let n = 300
        var rng = SeededGenerator(seed: 5)
        let b = (0..<(n * n)).map { _ in Double(rng.nextFloat()) - 0.5 }
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n { for k in 0..<n { a[i * n + j] += b[i * n + k] * b[j * n + k] } } }
        for i in 0..<n { a[i * n + i] += 1 }
        let inverse = DenseSolver.invertSymmetricPositiveDefinite(a, n: n, threads: 2)
        var worst = 0.0
        for i in 0..<n {
            for j in 0..<n {
                var sum = 0.0
                for k in 0..<n { sum += a[i * n + k] * inverse[k * n + j] }
                worst = max(worst, abs(sum - (i == j ? 1 : 0)))
            }
        }
        #expect(worst < 1e-8)
        #expect(inverse[1] == inverse[n])
    }

    @Test func easeMatchesABruteForceSolve() {
        var rng = SeededGenerator(seed: 3)
        var entries: [(row: Int32, column: Int32, value: Float)] = []
        for u in 0..<30 { for i in 0..<12 where rng.nextFloat() < 0.3 { entries.append((Int32(u), Int32(i), 1)) } }
        let matrix = SparseMatrix(rows: 30, columns: 12, entries: entries)
        let lambda: Float = 2
        let model = EASE(regularization: lambda).fit(matrix)
        // Brute force: B = argmin ‖X − XB‖² + λ‖B‖² with diag(B) = 0, solved column by column through the
        // normal equations restricted to the other items.
        let n = 12
        var gram = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        for u in 0..<30 {
            let cols = Array(matrix.columns(ofRow: u))
            for a in cols { for b in cols { gram[Int(a)][Int(b)] += 1 } }
        }
        for j in 0..<n {
            let others = (0..<n).filter { $0 != j }
            var system = others.map { a in others.map { b in gram[a][b] + (a == b ? Double(lambda) : 0) } + [gram[a][j]] }
            // Gaussian elimination with partial pivoting.
            let m = others.count
            for c in 0..<m {
                let pivot = (c..<m).max { abs(system[$0][c]) < abs(system[$1][c]) }!
                system.swapAt(c, pivot)
                for r in 0..<m where r != c {
                    let factor = system[r][c] / system[c][c]
                    for k in c...m { system[r][k] -= factor * system[c][k] }
                }
            }
            for (r, a) in others.enumerated() {
                let expected = system[r][m] / system[r][r]
                #expect(abs(Double(model.weights[a * n + j]) - expected) < 1e-4, "B[\(a),\(j)]")
            }
            #expect(model.weights[j * n + j] == 0)
        }
    }

    @Test func recommendationsNeverContainHistoryOrExcludedItems() {
        let (matrix, _) = plantedMatrix()
        let models: [any ScoringModel] = [
            EASE(regularization: 5).fit(matrix), ItemKNN().fit(matrix), PopularityModel(matrix),
        ]
        for model in models {
            for u in 0..<matrix.rows {
                let history = Array(matrix.columns(ofRow: u))
                let excluded: Set<Int32> = [0, 10, 19]
                let top = model.recommend(UserContext(user: u, items: history), k: 20, excluded: excluded)
                #expect(top.items.allSatisfy { !history.contains($0) && !excluded.contains($0) })
                #expect(top.items.count == 20 - history.count - excluded.subtracting(history).count)
            }
        }
    }

    @Test func trendingCountsOnlyThePastAndFavoursRecentEvents() {
        let events = [
            Interaction(user: 0, item: 0, time: 0), Interaction(user: 1, item: 0, time: 10),
            Interaction(user: 2, item: 1, time: 1000), Interaction(user: 3, item: 2, time: 5000),
        ]
        let model = TrendingModel(itemCount: 3, interactions: events, halfLife: 100)
        var scores = [Float](repeating: 0, count: 3)
        scores.withUnsafeMutableBufferPointer { model.score(UserContext(user: nil, items: [], time: 1100), into: $0) }
        #expect(scores[2] == 0)
        #expect(scores[1] > scores[0])
        #expect(abs(scores[1] - 0.5) < 1e-4)
    }

    @Test func hybridWeightsAreLearnedOnValidationAndItScores() throws {
        // Users of two groups rating over time; the split's validation carve-out drives the weights.
        var train: [RatingRow] = [], test: [RatingRow] = []
        for u in 0..<40 {
            let base = u < 20 ? 0 : 10
            for j in 0..<8 {
                let row = RatingRow(user: "u\(u)", item: "i\(base + (u + j * 3) % 10)", rating: 4, timestamp: Int64(j))
                if j < 6 { train.append(row) } else { test.append(row) }
            }
        }
        let split = EvaluationSplit(train: train, test: test)
        var options = ModelCatalog.Options()
        options.als.factors = 4
        options.easeRegularization = 5
        let hybrid = try ModelCatalog.fit("hybrid", on: split, options: options) as! HybridModel
        #expect(hybrid.weights.count == HybridTrainer.componentNames.count)
        // The blend chosen on validation is never worse there than its starting point, EASE alone.
        let validation = split.validationSplit()
        let blendedNDCG = HybridTrainer(options: options).chooseWeights(on: validation).ndcg
        let easeOnly = try ModelCatalog.fit("ease", on: validation, options: options)
        let easeNDCG = validation.metrics(validation.recommendAll(easeOnly, k: 10, threads: 1), k: 10).ndcg
        #expect(blendedNDCG >= easeNDCG - 1e-9)
        let m = split.metrics(split.recommendAll(hybrid, k: 3, threads: 2), k: 3)
        #expect(m.recall > 0.5)
    }
}

@Suite struct DatasetTests {
    @Test func parsesRatingsAndNamesTheBadLine() throws {
        let rows = try Dataset.parseRatings("1\t10\t5\t100\n2\t20\t3\t200\n")
        #expect(rows == [RatingRow(user: "1", item: "10", rating: 5, timestamp: 100), RatingRow(user: "2", item: "20", rating: 3, timestamp: 200)])
        do {
            _ = try Dataset.parseRatings("1\t10\t5\t100\n2\t20\n")
            Issue.record("a short line was accepted")
        } catch let error as DatasetError {
            #expect(error.line == 2)
        }
    }

    @Test func validationSplitHoldsOutTheLastFifthOfEachUsersTrainRows() {
        let train = (0..<10).map { RatingRow(user: "u", item: "i\($0)", rating: 1, timestamp: Int64($0)) }
        let split = EvaluationSplit(train: train, test: [])
        let validation = split.validationSplit()
        #expect(validation.train.count == 8)
        #expect(validation.relevant[0] == Set([split.items.firstIndex(of: "i8")!, split.items.firstIndex(of: "i9")!].map(Int32.init)))
    }
}

@Suite struct HybridSearchTests {
    /// Forcing the candidate path with candidates that cover the catalog must choose what the exact search chooses.
    @Test func theCandidateSearchCoveringTheCatalogChoosesWhatTheExactOneChooses() throws {
        let validation = try movieLensSlice().validationSplit()
        var exact = HybridTrainer(options: ModelCatalog.Options())
        exact.rounds = 1
        var candidates = exact
        candidates.exactItems = 0
        candidates.candidates = validation.items.count
        let a = exact.chooseWeights(on: validation), b = candidates.chooseWeights(on: validation)
        #expect(a.weights == b.weights)
        #expect(abs(a.ndcg - b.ndcg) < 1e-9)
        // With few candidates per component the search still runs and finds a useful blend.
        candidates.candidates = 20
        let few = candidates.chooseWeights(on: validation)
        #expect(few.ndcg > 0.05, "\(few)")
    }

    /// Past `maxValidationUsers` a fixed sample is scored: the same choice for the same seed.
    @Test func aSampleOfValidationUsersIsFixedBySeed() throws {
        let validation = try movieLensSlice().validationSplit()
        var trainer = HybridTrainer(options: ModelCatalog.Options())
        trainer.rounds = 1
        trainer.maxValidationUsers = 100
        let users = (0..<validation.users.count).filter { !validation.relevant[$0].isEmpty }
        #expect(users.count > 100)
        #expect(HybridTrainer.sample(users, 100, seed: 42) == HybridTrainer.sample(users, 100, seed: 42))
        #expect(HybridTrainer.sample(users, 100, seed: 42) != HybridTrainer.sample(users, 100, seed: 43))
        #expect(HybridTrainer.sample(users, 100, seed: 42).count == 100)
        let first = trainer.chooseWeights(on: validation), second = trainer.chooseWeights(on: validation)
        #expect(first.weights == second.weights && first.ndcg == second.ndcg)
    }

    /// A fit reports its phases in order, and ALS every iteration.
    @Test func fitsReportTheirPhasesAndSteps() throws {
        let updates = Mutex<[ProgressReporter.Update]>([])
        var options = ModelCatalog.Options()
        options.progress = ProgressReporter { update in updates.withLock { $0.append(update) } }
        options.als.iterations = 4
        _ = try ModelCatalog.fit("hybrid", on: movieLensSlice(), options: options)
        let seen = updates.withLock { $0 }
        let phases = seen.filter { $0.task == "hybrid" }.map(\.phase).reduce(into: [String]()) { if $0.last != $1 { $0.append($1) } }
        #expect(phases == ["validation fits", "recency", "validation scores", "blend search", "final fits"], "\(phases)")
        let fits = seen.filter { $0.task == "hybrid" && $0.phase == "validation fits" }
        #expect(fits.last.map { $0.done == $0.total && $0.total == HybridTrainer.componentNames.count } == true)
        let iterations = seen.filter { $0.task == "als" && $0.phase == "iterations" }.map(\.done)
        #expect(iterations.prefix(4) == [1, 2, 3, 4])
        #expect(seen.contains { $0.task == "ease" && $0.phase == "solve" })
    }
}

@Suite struct RecencyTests {
    /// Weight × exp(−rank/scale), rank = items seen strictly later; items seen together share a rank.
    @Test func historiesAreWeightedByHowManyItemsCameAfter() {
        let context = UserContext(user: nil, items: [4, 7, 9, 2], weights: [1, 2, 1, 0.5], time: 400, itemTimes: [100, 300, 300, 200])
        let weighted = context.weightedByRecency(scale: 2)
        let expected: [Float] = [1 * expf(-3 / 2), 2, 1, 0.5 * expf(-2 / 2)]
        #expect(zip(weighted.weights, expected).allSatisfy { abs($0 - $1) < 1e-6 }, "\(weighted.weights)")
        #expect(weighted.items == context.items && weighted.itemTimes == context.itemTimes)
        // Without times there is nothing to weigh by.
        #expect(UserContext(user: nil, items: [1, 2]).weightedByRecency(scale: 2).weights == [1, 1])
    }

    /// A hybrid with a recency scale scores a history as the same blend without one scores the weighted history, and
    /// keeps the scale when its components are replaced (precomputed for serving, unlearned).
    @Test func theHybridWeighsHistoriesBeforeEveryComponent() throws {
        let (matrix, _) = plantedMatrix()
        let parts: [any ScoringModel] = [EASE(regularization: 5).fit(matrix), ItemKNN().fit(matrix)]
        let weighted = HybridModel(components: parts, weights: [1, 0.5], recency: 3)
        let plain = HybridModel(components: parts, weights: [1, 0.5])
        let context = UserContext(user: nil, items: [0, 3, 6], time: 50, itemTimes: [10, 20, 30])
        var a = [Float](repeating: 0, count: 20), b = a, c = a
        a.withUnsafeMutableBufferPointer { weighted.score(context, into: $0) }
        b.withUnsafeMutableBufferPointer { plain.score(context.weightedByRecency(scale: 3), into: $0) }
        c.withUnsafeMutableBufferPointer { plain.score(context, into: $0) }
        #expect(a == b)
        #expect(a != c)
        #expect(weighted.precomputing(at: 50).recency == 3)
        #expect(weighted.replacing(components: parts).recency == 3)
    }
}
