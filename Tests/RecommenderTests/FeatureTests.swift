import Foundation
import Testing
@testable import Recommender

@Suite struct FeatureTests {
    @Test func scalersMatchHandComputedValuesAndAreStable() {
        let rows: [[Float]] = [[1, 10, 7], [3, 20, 7], [5, 60, 7]]
        let minMax = FeatureScaler(kind: .minMax, fittedOn: rows)
        #expect(minMax.transform([1, 10, 7]) == [0, 0, 0])
        #expect(minMax.transform([5, 60, 7]) == [1, 1, 0])
        #expect(minMax.transform([3, 35, 9]) == [0.5, 0.5, 0], "a constant column maps to 0")
        let z = FeatureScaler(kind: .zScore, fittedOn: rows)
        // Column 0: mean 3, population std sqrt(8/3).
        let t = z.transform([5, 30, 7])
        #expect(abs(t[0] - 2 / (8.0 as Float / 3).squareRoot()) < 1e-5)
        #expect(abs(t[1]) < 1e-5, "30 is column 1's mean")
        #expect(t[2] == 0)
        // Fitted once, it transforms later rows the same way (it is what the model stores).
        #expect(z == FeatureScaler(kind: .zScore, fittedOn: rows))
    }

    /// Two planted groups; half of each lacks its label and gets its group's label back.
    @Test func knnImputationRecoversPlantedGroupsAndMarksOnlyMissingRows() {
        var features: [[Float]] = [], labels: [String?] = [], truth: [String] = []
        var rng = SeededGenerator(seed: 5)
        for n in 0..<60 {
            let group = n % 2
            features.append([Float(group) * 4 + rng.nextFloat(), Float(group) * -3 + rng.nextFloat()])
            truth.append(group == 0 ? "25-34" : "55-64")
            labels.append(n % 4 < 2 ? truth[n] : nil)
        }
        let imputed = KNNImputer(k: 5).impute(features: features, labels: labels)
        for n in 0..<60 {
            if labels[n] != nil {
                #expect(imputed[n] == nil)
            } else {
                #expect(imputed[n]?.value == truth[n])
                #expect(imputed[n]?.support == 1)
            }
        }
        #expect(KNNImputer(k: 3).impute(features: [[0], [1]], labels: [nil, nil]) == [nil, nil], "nothing to learn from")
        // A 2–2 tie goes to the label of the closest neighbour.
        let tie = KNNImputer(k: 4).impute(features: [[0], [1], [1.1], [-2], [-2.1]], labels: [nil, "a", "a", "b", "b"])
        #expect(tie[0] == .init(value: "a", support: 0.5))
    }

    /// Only the given references vote (a large shop bounds them), and the rows imputed on several threads get what
    /// one thread gives them.
    @Test func knnImputationVotesWithTheReferencesOnlyAndAgreesAcrossThreads() {
        var features: [[Float]] = [], labels: [String?] = []
        var rng = SeededGenerator(seed: 9)
        for n in 0..<3000 {
            features.append([rng.nextFloat() * 10, rng.nextFloat() * 10, rng.nextFloat()])
            labels.append(n % 3 == 0 ? (features[n][0] < 5 ? "young" : "old") : nil)
        }
        let imputer = KNNImputer(k: 5)
        let serial = imputer.impute(features: features, labels: labels)
        #expect(imputer.impute(features: features, labels: labels, threads: 4) == serial)
        // Two references, far apart on the first feature: each row takes the label of the one nearer.
        let left = labels.indices.first { labels[$0] == "young" && features[$0][0] < 1 }!
        let right = labels.indices.first { labels[$0] == "old" && features[$0][0] > 9 }!
        let two = KNNImputer(k: 1).impute(features: features, labels: labels, references: [left, right], threads: 2)
        for n in labels.indices where labels[n] == nil {
            let nearer =
                zip(features[n], features[left]).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
                <= zip(features[n], features[right]).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
            #expect(two[n]?.value == (nearer ? "young" : "old"))
        }
        #expect(labels.indices.filter { labels[$0] != nil }.allSatisfy { two[$0] == nil }, "a labelled row is never imputed")
    }

    @Test func behaviourFeaturesDescribeActivityTypesPricesAndRecency() {
        let matrix = SparseMatrix(
            users: 2, items: 3, interactions: [Interaction(user: 0, item: 0), Interaction(user: 0, item: 1), Interaction(user: 1, item: 2)])
        let f = BehaviourFeatures(
            matrix: matrix, itemTypes: [0, 0, 1], typeNames: ["apparel", "books"], itemPrices: [9, nil, 99],
            times: [86_400, 2 * 86_400, 0], now: 5 * 86_400)
        #expect(f.names == ["activity", "log_price", "share:apparel", "share:books", "days_since_last"])
        #expect(f.rows[0][2] == 1 && f.rows[0][3] == 0)
        #expect(f.rows[1][3] == 1)
        #expect(abs(f.rows[0][1] - log1p(9)) < 1e-5)
        #expect(f.rows[0][4] == 3)
        #expect(f.rows[1][4] == 5)
    }
}
