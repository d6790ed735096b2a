/// How a data-parallel job over `ranks` processes splits each epoch: every batch of `batch`
/// positions is cut into `ranks` contiguous parts, part `r` going to rank `r`. A rank's shard is
/// the set of samples that land in its parts, fixed for the whole run, so each rank keeps only
/// its shard in memory; shuffling permutes samples within a shard.
public struct ShardPlan: Sendable, Equatable {
    public let count: Int
    public let batch: Int
    public let ranks: Int

    public init(count: Int, batch: Int, ranks: Int) {
        precondition(count >= 0 && batch >= 1 && ranks >= 1)
        self.count = count
        self.batch = batch
        self.ranks = ranks
    }

    /// Positions `share(length, r)` of a batch of `length` positions belong to rank `r`.
    public static func share(of length: Int, rank: Int, ranks: Int) -> Range<Int> {
        (length * rank / ranks)..<(length * (rank + 1) / ranks)
    }

    /// The epoch positions (equally, in unshuffled order, the sample indices) of rank `rank`.
    public func positions(rank: Int) -> [Int] {
        var result: [Int] = []
        result.reserveCapacity(count / ranks + batch)
        var start = 0
        while start < count {
            let length = min(batch, count - start)
            for offset in Self.share(of: length, rank: rank, ranks: ranks) { result.append(start + offset) }
            start += length
        }
        return result
    }

    /// The epoch's sample order: unshuffled it is the identity; shuffled, each rank's samples are
    /// permuted among that rank's positions only.
    public func order(epoch: Int, options: TrainingOptions) -> [Int32] {
        guard options.recipe.shuffles, ranks > 1 else { return options.sampleOrder(epoch: epoch, count: count) }
        var order = [Int32](repeating: 0, count: count)
        for rank in 0..<ranks {
            let positions = positions(rank: rank)
            var samples = positions
            samples.shuffle(seed: options.shuffleSeed(epoch: epoch, stream: rank))
            for (position, sample) in zip(positions, samples) { order[position] = Int32(sample) }
        }
        return order
    }

    /// Rank `rank`'s shard of `data` (a whole split of `count` samples).
    public func shard(of data: Dataset, rank: Int) -> DatasetShard {
        precondition(data.count == count, "shard plan for \(count) samples, data set has \(data.count)")
        let rows = positions(rank: rank)
        var rowOf = [Int32](repeating: -1, count: count)
        for (row, sample) in rows.enumerated() { rowOf[sample] = Int32(row) }
        return DatasetShard(
            data: data.selecting(rows, name: "\(data.name)[rank \(rank) of \(ranks)]"),
            totalCount: count, row: rowOf)
    }
}

/// One rank's part of a training split: its samples, and where each global sample index is.
public struct DatasetShard: Sendable {
    /// This rank's samples only.
    public let data: Dataset
    /// Samples in the whole split.
    public let totalCount: Int
    /// `row[i]` is global sample `i`'s row in `data`, or -1 when another rank holds it.
    public let row: [Int32]
}
