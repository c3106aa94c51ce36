import Foundation
import Policy
import FeatureStore
import Recommender
import Serving
import Storage
import Synchronization

/// The current model, swapped atomically after a retrain.
public final class ModelRegistry: Sendable {
    private struct State {
        var stable: ServingModel?
        var canary: ServingModel?
        /// Counts every change, so that ``forget(_:detach:)`` installs only over what it computed from.
        var generation: UInt64 = 0
        /// Subjects whose data was deleted and who may still be in a model being trained or unlearned: every model
        /// installed forgets them too, until ``settled(_:)`` says no model can hold them.
        var forgotten: Set<String> = []
    }

    /// Installs `model` with the deleted subjects forgotten: computed outside the lock (it copies the model's
    /// training data), installed only if nobody was forgotten meanwhile (else computed again).
    private func install(_ model: ServingModel, _ put: (inout State, ServingModel) -> Void) {
        while true {
            let forgotten = current.withLock { $0.forgotten }
            let prepared = forgotten.isEmpty ? model : model.forgetting(forgotten, detach: true) ?? model
            let done = current.withLock { state -> Bool in
                guard state.forgotten == forgotten else { return false }
                put(&state, prepared)
                state.generation += 1
                return true
            }
            if done { return }
        }
    }
    private let current = Mutex(State())
    public init() {}
    public var model: ServingModel? { current.withLock { $0.stable } }
    /// The stable and canary models' versions, without copying a model (a copy retains every one of its
    /// arrays and tables: measurable on a cache hit, which needs only the version).
    public var versions: (stable: String?, canary: String?) { current.withLock { ($0.stable?.version, $0.canary?.version) } }
    /// A newly trained model serving a share of subjects until it is promoted or rolled back.
    public var canary: ServingModel? { current.withLock { $0.canary } }
    /// Makes `model` the one every subject gets (and ends any canary).
    public func swap(_ model: ServingModel) {
        install(model) { state, prepared in
            state.stable = prepared
            state.canary = nil
        }
    }
    public func setCanary(_ model: ServingModel) {
        install(model) { state, prepared in state.canary = prepared }
    }

    /// Drops what the served models (stable and canary) hold about these subjects alone, before a withdrawal or an
    /// erasure returns (``ServingModel/forgetting(_:detach:)``). Computed outside the lock, installed only if no other
    /// change came in between (else computed again on what did).
    public func forget(_ tokens: Set<String>, detach: Bool = true) {
        if detach { current.withLock { $0.forgotten.formUnion(tokens) } }
        while true {
            let (seen, stable, canary) = current.withLock { ($0.generation, $0.stable, $0.canary) }
            let newStable = stable?.forgetting(tokens, detach: detach), newCanary = canary?.forgetting(tokens, detach: detach)
            if newStable == nil && newCanary == nil { return }
            let done = current.withLock { state -> Bool in
                guard state.generation == seen else { return false }
                state.stable = newStable ?? state.stable
                state.canary = newCanary ?? state.canary
                state.generation += 1
                return true
            }
            if done { return }
        }
    }
    /// Makes the canary the stable model if it is still the one of `version`: the registry's own copy, with whatever
    /// was forgotten since it was read. False when another model replaced it meanwhile.
    func promoteCanary(version: String) -> Bool {
        current.withLock { state in
            guard let canary = state.canary, canary.version == version else { return false }
            state.stable = canary
            state.canary = nil
            state.generation += 1
            return true
        }
    }

    /// These subjects are in no served model any more, nor in any model still being built: installs stop forgetting them.
    func settled(_ tokens: some Sequence<String>) {
        current.withLock { state in for token in tokens { state.forgotten.remove(token) } }
    }

    public func dropCanary() {
        current.withLock {
            $0.canary = nil
            $0.generation += 1
        }
    }
}
