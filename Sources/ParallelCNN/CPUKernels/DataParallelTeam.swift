/// Threads that train whole blocks of a batch, each with its own workspace, into the block sums
/// of `BatchGradient`: the data strategy of the `threads` engine and, inside each rank, of `mpi`.
///
/// Blocks are claimed from a shared counter, so a thread on a faster (or less busy) core takes
/// more of them; which thread fills a block never changes its sum, so results do not depend on
/// the thread count.
package final class DataParallelTeam {
    let pool: WorkerPool
    let workspaces: [any SampleTrainer]
    private let sums: BatchGradient

    init(threads: Int, workspaces count: Int? = nil, architecture: Architecture = .paper) {
        pool = WorkerPool(size: threads)
        let workspaces = (0..<(count ?? threads)).map { _ in makeSampleTrainer(architecture) }
        self.workspaces = workspaces
        sums = BatchGradient(
            count: ParameterState.paddedCount(architecture.parameterCount), blockSize: BatchGradient.blockSize(for: workspaces[0]))
    }

    /// Gradients of at least this many floats are folded by slices on all threads.
    package static let sliceFoldFloats = 16_384

    /// The summed gradient and statistics of samples `indices` (rows of `images` and `labels`)
    /// under parameters `p`. The pointer stays valid until the next call.
    func gradient(
        images: ImagePixels, labels: UnsafeBufferPointer<UInt8>, indices: UnsafeBufferPointer<Int32>,
        parameters p: UnsafePointer<Float>, recipe: Recipe
    ) -> (UnsafePointer<Float>, StepStatistics) {
        let batch = indices.count
        if trainBlocks(images: images, labels: labels, indices: indices, parameters: p, recipe: recipe),
            sums.blockCount(batch: batch) > 1
        {
            let vectors = (sums.count + 15) / 16, sums = self.sums, pool = self.pool
            pool.run { member in
                let share = pool.share(of: vectors, member: member)
                sums.fold(batch: batch, floats: (share.lowerBound * 16)..<min(sums.count, share.upperBound * 16))
            }
        }
        return sums.foldedSum(batch: batch)
    }

    /// Trains the samples `indices` as `gradient` does and applies their update to `state`.
    /// Where `gradient` would fold large block sums by slices after the blocks, the update
    /// folds them instead, each slice as it updates it (`ParameterState.apply(blockSums:)`):
    /// the same sums, without writing the batch's sum and reading it back, and one fork-join
    /// fewer.
    func train(
        images: ImagePixels, labels: UnsafeBufferPointer<UInt8>, indices: UnsafeBufferPointer<Int32>,
        state: ParameterState, rule: UpdateRule
    ) -> StepStatistics {
        let batch = indices.count
        let foldLater = trainBlocks(
            images: images, labels: labels, indices: indices, parameters: UnsafePointer(state.values), recipe: rule.recipe)
        if foldLater, sums.blockCount(batch: batch) > 1 {
            state.apply(
                blockSums: sums.blockSum(0), blocks: sums.blockCount(batch: batch), stride: sums.count, batchSize: batch, rule: rule,
                on: pool)
            return sums.statistics(batch: batch)
        }
        let (gradient, statistics) = sums.foldedSum(batch: batch)
        state.apply(gradientSum: gradient, batchSize: batch, rule: rule, on: pool)
        return statistics
    }

    /// Trains the blocks of a batch into the block sums, claimed by the threads. Small
    /// gradients are folded by the first thread out of blocks while the others finish theirs;
    /// returns whether the sums are large enough to be folded by slices on all threads
    /// afterwards instead (a serial fold of 8 blocks of LeNet-5's 62k floats took a tenth of a
    /// step).
    private func trainBlocks(
        images: ImagePixels, labels: UnsafeBufferPointer<UInt8>, indices: UnsafeBufferPointer<Int32>,
        parameters p: UnsafePointer<Float>, recipe: Recipe
    ) -> Bool {
        let batch = indices.count
        sums.beginRound(batch: batch)
        let sums = self.sums, workspaces = self.workspaces, pool = self.pool
        let foldTogether = sums.count >= Self.sliceFoldFloats && pool.size > 1
        pool.runClaiming(
            items: sums.blockCount(batch: batch),
            { member, block in
                let w = workspaces[member]
                sums.train(block: block, batch: batch, on: w) { positions in
                    w.trainBlock(images, samples: UnsafeBufferPointer(rebasing: indices[positions]), labels: labels, p, recipe: recipe)
                }
                sums.markReady(block: block)
            },
            afterwards: {
                // The block sums in block order (bit for bit `sum(batch:)`), while the other threads
                // finish their last blocks.
                if !foldTogether { sums.foldInOrder(batch: batch) }
            })
        return foldTogether
    }

    /// Predicted classes of `range`'s samples, split across the threads.
    func predict(
        images: ImagePixels, range: Range<Int>, parameters p: UnsafePointer<Float>, recipe: Recipe,
        into predictions: UnsafeMutableBufferPointer<UInt8>
    ) {
        let workspaces = self.workspaces, pool = self.pool
        pool.run { member in
            let share = pool.share(of: range.count, member: member)
            workspaces[member].predict(
                images, range: (range.lowerBound + share.lowerBound)..<(range.lowerBound + share.upperBound), p, recipe: recipe,
                into: UnsafeMutableBufferPointer(rebasing: predictions[share]))
        }
    }
}

/// The fastest workspace for `architecture`: the paper's specialised kernels for its network,
/// the generic layers otherwise.
func makeSampleTrainer(_ architecture: Architecture) -> any SampleTrainer {
    architecture.isPaper ? SampleWorkspace() : CPUNetwork(architecture)
}
