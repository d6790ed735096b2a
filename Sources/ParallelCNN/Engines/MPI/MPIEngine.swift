#if MPI
/// The cluster engine: one process per rank under `mpirun`, all ranks holding the whole model.
///
/// - `layer` (the paper's MPI strategy): every rank runs every sample; the c1/s1 rows, the c1
///   error rows and the weight-gradient rows are split by rank and exchanged with
///   `MPI_Allgatherv` after each of three stages, so every element is computed by one rank in the
///   sequential engine's order and all ranks continue bit-identical to `sequential`. The f layer
///   and the s1 error (10 outputs, 216 values) are computed on every rank: a message costs more.
/// - `data`: each rank trains its part of every batch (its `ShardPlan` positions) with `threads`
///   threads (`DataParallelTeam`), and the ranks' gradient sums and statistics are added with
///   `MPI_Allreduce`; every rank applies the same update.
public final class MPIEngine: ParameterStateEngine, ShardedEngine {
    public let communicator: Communicator
    public let strategy: EngineStrategy
    public let threads: Int
    public var description: String {
        "mpi(ranks=\(communicator.size), \(strategy.rawValue)\(strategy == .data ? ", T=\(threads)" : ""))"
    }

    public let state: ParameterState
    public let stepper = EpochStepper()
    public var architecture: Architecture { state.architecture }
    public var processGroup: any ProcessGroup { communicator }
    private let team: DataParallelTeam
    private let batchGradient: BatchGradient
    /// For `data` on a shard: global sample index → row of the shard.
    private var shardRows: [Int32]?
    private var localIndices: [Int32] = []
    /// The gradient sum and three statistics sent through `MPI_Allreduce` (data strategy).
    private let reduceBuffer: UnsafeMutablePointer<Float>
    private let reduceStatistics = UnsafeMutablePointer<Double>.allocate(capacity: 3)
    /// The layer strategy's exchanges: the paper's three stages.
    private let exchanges: [Exchange?]
    /// The generic layers' exchanges by samples in the block: one per pass that is not
    /// replicated (nil for those).
    private var exchangesBySamples: [Int: [Exchange?]] = [:]

    public init(
        parameters: Parameters, communicator: Communicator, strategy: EngineStrategy, threads: Int = 1,
        architecture: Architecture = .paper
    ) {
        precondition(threads >= 1)
        precondition(strategy != .fused, "the CPU engines split by layer or by data")
        self.communicator = communicator
        self.strategy = strategy
        self.threads = strategy == .data ? threads : 1
        state = ParameterState(parameters, architecture: architecture)
        team = DataParallelTeam(threads: self.threads, architecture: architecture)
        batchGradient = BatchGradient(count: state.count, blockSize: BatchGradient.blockSize(for: team.workspaces[0]))
        reduceBuffer = .allocate(capacity: state.count)
        reduceBuffer.initialize(repeating: 0, count: state.count)
        reduceStatistics.initialize(repeating: 0, count: 3)
        let ranks = communicator.size
        if strategy == .data {
            exchanges = []
        } else if team.workspaces[0] is CPUNetwork {
            exchanges = []  // per block size, `blockExchanges`
        } else {
            exchanges = Exchange.layerStages(of: team.workspaces[0] as! SampleWorkspace, ranks: ranks)
        }
    }

    deinit {
        reduceBuffer.deallocate()
        reduceStatistics.deallocate()
    }

    public var trainsOnShard: Bool { strategy == .data }

    /// Trains from this rank's shard: steps then receive global sample indices.
    public func prepare(shard: DatasetShard) throws {
        guard strategy == .data else {
            throw EngineError.invalidOption(
                engine: "mpi", message: "the layer strategy runs every sample on every rank and takes the whole training set, not a shard")
        }
        shardRows = shard.row
        stepper.data = shard.data
    }

    public func trainStep(_ indices: UnsafeBufferPointer<Int32>, of data: Dataset, rule: UpdateRule) -> StepStatistics {
        data.withImagePixels { images in
            data.labels.withUnsafeBufferPointer { labels in
                strategy == .layer
                    ? trainLayerParallel(images, labels, indices, rule)
                    : trainDataParallel(images, labels, indices, rule)
            }
        }
    }

    // MARK: Data strategy

    private func trainDataParallel(
        _ images: ImagePixels, _ labels: UnsafeBufferPointer<UInt8>,
        _ indices: UnsafeBufferPointer<Int32>, _ rule: UpdateRule
    ) -> StepStatistics {
        let mine = ShardPlan.share(of: indices.count, rank: communicator.rank, ranks: communicator.size)
        localIndices.removeAll(keepingCapacity: true)
        for k in mine {
            let sample = indices[k]
            localIndices.append(shardRows.map { $0[Int(sample)] } ?? sample)
        }
        if let bad = localIndices.first(where: { $0 < 0 }) {
            communicator.fail(EngineError.sampleNotInShard(Int(bad)))
        }
        var stats = StepStatistics()
        if localIndices.isEmpty {
            reduceBuffer.update(repeating: 0, count: state.count)
        } else {
            let (gradient, local) = localIndices.withUnsafeBufferPointer {
                team.gradient(
                    images: images, labels: labels, indices: $0, parameters: UnsafePointer(state.values),
                    recipe: rule.recipe)
            }
            reduceBuffer.update(from: gradient, count: state.count)
            stats = local
        }
        reduceStatistics[0] = stats.lossSum
        reduceStatistics[1] = Double(stats.misclassified)
        reduceStatistics[2] = Double(stats.samples)
        communicator.allreduceSum(reduceBuffer, count: state.count, context: "summing the batch gradient")
        communicator.allreduceSum(reduceStatistics, count: 3, context: "summing the batch statistics")
        let total = StepStatistics(
            lossSum: reduceStatistics[0], misclassified: Int(reduceStatistics[1]),
            samples: Int(reduceStatistics[2]))
        if total.samples > 0 { state.apply(gradientSum: reduceBuffer, batchSize: total.samples, rule: rule) }
        return total
    }

    // MARK: Layer strategy

    private func trainLayerParallel(
        _ images: ImagePixels, _ labels: UnsafeBufferPointer<UInt8>,
        _ indices: UnsafeBufferPointer<Int32>, _ rule: UpdateRule
    ) -> StepStatistics {
        let batch = indices.count
        guard batch > 0 else { return StepStatistics() }
        if let network = team.workspaces[0] as? CPUNetwork {
            return trainLayerParallel(network, images, labels, indices, rule)
        }
        let p = UnsafePointer(state.values), w = team.workspaces[0] as! SampleWorkspace
        let rank = communicator.rank, ranks = communicator.size
        let (sum, stats) = batchGradient.sum(batch: batch, on: w) { positions in
            let sample = Int(indices[positions.lowerBound]), label = Int(labels[sample])
            w.loadImage(images, sample: sample)
            forwardLayerParallel(p, recipe: rule.recipe)
            let wrong = w.predictedClass != label
            let stats = StepStatistics(
                lossSum: w.outputError(label: label, recipe: rule.recipe),
                misclassified: wrong ? 1 : 0, samples: 1)
            w.denseBackward(outputs: 0..<Network.classes)
            w.denseBackwardInput(p, chunks: 0..<(Network.poolOutputs / 8))
            w.subsampleBackward(
                kernelRows: ShardPlan.share(of: Network.poolKernel, rank: rank, ranks: ranks),
                includeBias: rank == 0)
            let rows = ShardPlan.share(of: Network.poolSide, rank: rank, ranks: ranks)
            for c in 0..<Network.channels {
                w.subsampleBackwardInput(p, pairs: (c * Network.poolSide + rows.lowerBound)..<(c * Network.poolSide + rows.upperBound))
            }
            exchanges[1]!.run(communicator, context: "exchanging c1 error and s1 gradient rows")
            let items = ShardPlan.share(of: Network.channels * Network.convKernel, rank: rank, ranks: ranks)
            w.convBackward(items: items)
            w.finishConvBackward(items: items)
            exchanges[2]!.run(communicator, context: "exchanging c1 gradient rows")
            return stats
        }
        state.apply(gradientSum: sum, batchSize: batch, rule: rule)
        return stats
    }

    /// Any network but the paper's: each pass of the generic layers split across the ranks, and
    /// what each rank produced gathered on every rank after the pass (a replicated pass runs
    /// whole on every rank). Every element is computed by one rank in the sequential order, so
    /// all ranks continue bit-identical to `sequential`.
    private func trainLayerParallel(
        _ network: CPUNetwork, _ images: ImagePixels, _ labels: UnsafeBufferPointer<UInt8>,
        _ indices: UnsafeBufferPointer<Int32>, _ rule: UpdateRule
    ) -> StepStatistics {
        let p = UnsafePointer(state.values)
        let (sum, stats) = batchGradient.sum(batch: indices.count, on: network) { positions in
            let samples = UnsafeBufferPointer(rebasing: indices[positions])
            return network.trainBlock(images, samples: samples, label: { Int(labels[Int(samples[$0])]) }, recipe: rule.recipe) {
                passes, first in run(passes, exchangesFrom: first, exchanges: blockExchanges(network), p)
            }
        }
        state.apply(gradientSum: sum, batchSize: indices.count, rule: rule)
        return stats
    }

    /// The exchanges of the generic layers for the network's current block size (a pass's pieces
    /// grow with the samples in the block), made on first use.
    private func blockExchanges(_ network: CPUNetwork) -> [Exchange?] {
        let n = network.block.samples
        if let made = exchangesBySamples[n] { return made }
        let ranks = communicator.size
        let made = (network.forwardPasses + network.backwardPasses).map { pass in
            pass.replicated
                ? nil
                : Exchange(
                    segments: (0..<ranks).map { rank in
                        pass.produced!(ShardPlan.share(of: pass.items, rank: rank, ranks: ranks))
                    })
        }
        exchangesBySamples[n] = made
        return made
    }

    private func run(_ passes: [LayerPass], exchangesFrom first: Int, exchanges: [Exchange?], _ p: UnsafePointer<Float>) {
        let rank = communicator.rank, ranks = communicator.size
        for (i, pass) in passes.enumerated() {
            if let exchange = exchanges[first + i] {
                let items = ShardPlan.share(of: pass.items, rank: rank, ranks: ranks)
                if !items.isEmpty { pass.run(p, items) }
                exchange.run(communicator, context: "exchanging the results of \(pass.name)")
            } else {
                pass.run(p, 0..<pass.items)
            }
        }
    }

    /// c1 and s1 for this rank's s1 rows, exchanged; then f on every rank.
    private func forwardLayerParallel(_ p: UnsafePointer<Float>, recipe: Recipe) {
        let w = team.workspaces[0] as! SampleWorkspace
        let rows = ShardPlan.share(of: Network.poolSide, rank: communicator.rank, ranks: communicator.size)
        w.convForward(p, rows: (rows.lowerBound * Network.poolKernel)..<(rows.upperBound * Network.poolKernel))
        for c in 0..<Network.channels {
            w.subsampleForward(p, pairs: (c * Network.poolSide + rows.lowerBound)..<(c * Network.poolSide + rows.upperBound))
        }
        exchanges[0]!.run(communicator, context: "exchanging c1 and s1 output rows")
        w.denseForward(p, outputs: 0..<Network.classes)
        w.fActivate(recipe: recipe)
    }

    /// Predictions are computed on every rank from its own copy of the model: no messages.
    public func predict(_ data: Dataset, range: Range<Int>, recipe: Recipe, into predictions: UnsafeMutableBufferPointer<UInt8>) {
        data.withImagePixels { images in
            team.predict(
                images: images, range: range, parameters: UnsafePointer(state.values),
                recipe: recipe, into: predictions)
        }
    }
}

/// One `MPI_Allgatherv` of the layer strategy: each rank's pieces of some workspace buffers are
/// packed into one contiguous block per rank, gathered, and unpacked on every rank.
final class Exchange {
    typealias Segment = BufferSegment

    let segments: [[Segment]]  // per rank
    let counts: UnsafeMutablePointer<Int32>
    let displacements: UnsafeMutablePointer<Int32>
    let buffer: UnsafeMutablePointer<Float>

    init(segments: [[Segment]]) {
        self.segments = segments
        let sizes = segments.map { $0.reduce(0) { $0 + $1.count } }
        counts = .allocate(capacity: sizes.count)
        displacements = .allocate(capacity: sizes.count)
        var offset = 0
        for (rank, size) in sizes.enumerated() {
            counts[rank] = Int32(size)
            displacements[rank] = Int32(offset)
            offset += size
        }
        buffer = .allocate(capacity: max(1, offset))
        buffer.initialize(repeating: 0, count: max(1, offset))
    }

    deinit {
        counts.deallocate()
        displacements.deallocate()
        buffer.deallocate()
    }

    /// Sends this rank's pieces and receives everyone else's, in place.
    func run(_ communicator: Communicator, context: @autoclosure () -> String) {
        let me = communicator.rank
        var cursor = buffer + Int(displacements[me])
        for s in segments[me] {
            cursor.update(from: s.base + s.offset, count: s.count)
            cursor += s.count
        }
        communicator.allgatherv(buffer, counts: counts, displacements: displacements, context: context())
        for rank in segments.indices where rank != me {
            var cursor = UnsafePointer(buffer + Int(displacements[rank]))
            for s in segments[rank] {
                (s.base + s.offset).update(from: cursor, count: s.count)
                cursor += s.count
            }
        }
    }

    /// The three exchanges of the layer strategy on workspace `w`: (0) c1 and s1 outputs by s1 row,
    /// (1) c1 error by s1 row with the s1 weight gradient by kernel row, (2) the c1 weight
    /// gradient by (map, kernel row) item with the biases of the maps whose first item it holds.
    static func layerStages(of w: SampleWorkspace, ranks: Int) -> [Exchange] {
        let side = Network.poolSide, k2 = Network.poolKernel, width = Network.convSide
        let mapSize = Network.convSide * Network.convSide, k1 = Network.convKernel
        func rows(_ rank: Int) -> Range<Int> { ShardPlan.share(of: side, rank: rank, ranks: ranks) }
        let outputs = (0..<ranks).map { rank in
            (0..<Network.channels).flatMap { c in
                [
                    Segment(base: w.c1Out, offset: c * mapSize + rows(rank).lowerBound * k2 * width, count: rows(rank).count * k2 * width),
                    Segment(base: w.s1Out, offset: c * side * side + rows(rank).lowerBound * side, count: rows(rank).count * side)
                ]
            }
        }
        let errors = (0..<ranks).map { rank in
            let kernelRows = ShardPlan.share(of: k2, rank: rank, ranks: ranks)
            return (0..<Network.channels).map { c in
                Segment(base: w.c1Error, offset: c * mapSize + rows(rank).lowerBound * k2 * width, count: rows(rank).count * k2 * width)
            } + [Segment(base: w.grad, offset: Parameters.Offset.s1Weight + kernelRows.lowerBound * k2, count: kernelRows.count * k2)]
                + (rank == 0 ? [Segment(base: w.grad, offset: Parameters.Offset.s1Bias, count: 1)] : [])
        }
        let gradients = (0..<ranks).map { rank in
            let items = ShardPlan.share(of: Network.channels * k1, rank: rank, ranks: ranks)
            let maps = ((items.lowerBound + k1 - 1) / k1)..<((items.upperBound + k1 - 1) / k1)
            return [
                Segment(base: w.grad, offset: Parameters.Offset.c1Weight + items.lowerBound * k1, count: items.count * k1),
                Segment(base: w.grad, offset: Parameters.Offset.c1Bias + maps.lowerBound, count: maps.count)
            ]
        }
        return [Exchange(segments: outputs), Exchange(segments: errors), Exchange(segments: gradients)]
    }
}
#endif
