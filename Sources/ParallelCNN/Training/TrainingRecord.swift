/// What a checkpoint must remember to continue a run exactly: the options that decide the
/// result, where the run stands, and what it trained on.
public struct TrainingRecord: Equatable, Sendable {
    public var options: TrainingOptions
    public var position: TrainingPosition
    public var dataset: DatasetKind
    /// Training samples used per epoch (the `--limit`, or the whole set).
    public var trainSamples: Int

    public init(options: TrainingOptions, position: TrainingPosition, dataset: DatasetKind, trainSamples: Int) {
        self.options = options
        self.position = position
        self.dataset = dataset
        self.trainSamples = trainSamples
    }
}

/// A checkpoint whose training metadata is missing or unreadable.
public struct TrainingRecordError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let fault: String
    public var description: String { "\(path): \(fault)" }
}

extension Checkpoint {
    /// A checkpoint of `parameters` and the optimizer's buffers recording `record` in its metadata,
    /// with the hash of each group of tensors, which reading checks.
    public init(
        parameters: Parameters, optimizerState: OptimizerState, record: TrainingRecord, engine: String,
        architecture: Architecture = .paper
    ) {
        let o = record.options
        let initialization: String =
            switch o.initialization {
            case .original: "original"
            case .seeded(let seed): "seeded:\(seed)"
            }
        var metadata = [
            "recipe": o.recipe.rawValue,
            "optimizer": o.rule.optimizer.rawValue,
            "epoch": String(record.position.epoch),
            "position": String(record.position.position),
            "epochs": String(o.epochs),
            "batch": String(o.batchSize),
            "learning_rate": String(o.rule.learningRate),
            "momentum": String(o.rule.momentum),
            "lr_decay": String(o.learningRateDecay),
            "seed": String(o.seed),
            "init": initialization,
            "dataset": record.dataset.rawValue,
            "train_samples": String(record.trainSamples),
            "engine": engine,
            Checkpoint.parameterHashKey: parameters.hashString
        ]
        metadata[Checkpoint.velocityHashKey] = optimizerState.velocity?.hashString
        metadata[Checkpoint.secondMomentHashKey] = optimizerState.secondMoment?.hashString
        self.init(
            parameters: parameters, velocity: optimizerState.velocity, secondMoment: optimizerState.secondMoment,
            metadata: metadata, architecture: architecture)
    }

    /// Reads the training state back; `path` names the file in errors.
    public func trainingRecord(path: String) throws(TrainingRecordError) -> TrainingRecord {
        func value(_ key: String) throws(TrainingRecordError) -> String {
            guard let v = metadata[key] else { throw TrainingRecordError(path: path, fault: "metadata has no \"\(key)\"") }
            return v
        }
        func number<T: LosslessStringConvertible>(_ key: String, _: T.Type) throws(TrainingRecordError) -> T {
            let text = try value(key)
            guard let v = T(text) else { throw TrainingRecordError(path: path, fault: "metadata \"\(key)\" is not a number: \(text)") }
            return v
        }
        guard let recipe = Recipe(rawValue: try value("recipe")) else {
            throw TrainingRecordError(path: path, fault: "unknown recipe \"\(metadata["recipe"] ?? "")\"")
        }
        // Checkpoints from before Adam have no "optimizer": they are all SGD.
        guard let optimizer = Optimizer(rawValue: metadata["optimizer"] ?? Optimizer.sgd.rawValue) else {
            throw TrainingRecordError(path: path, fault: "unknown optimizer \"\(metadata["optimizer"] ?? "")\"")
        }
        guard let dataset = DatasetKind(rawValue: try value("dataset")) else {
            throw TrainingRecordError(path: path, fault: "unknown dataset \"\(metadata["dataset"] ?? "")\"")
        }
        let initText = try value("init")
        let initialization: Initialization
        if initText == "original" {
            initialization = .original
        } else if initText.hasPrefix("seeded:"), let seed = UInt64(initText.dropFirst("seeded:".count)) {
            initialization = .seeded(seed)
        } else {
            throw TrainingRecordError(path: path, fault: "unknown initialisation \"\(initText)\"")
        }
        let options = TrainingOptions(
            recipe: recipe, optimizer: optimizer, epochs: try number("epochs", Int.self),
            batchSize: try number("batch", Int.self),
            learningRate: try number("learning_rate", Float.self), momentum: try number("momentum", Float.self),
            seed: try number("seed", UInt64.self), initialization: initialization,
            learningRateDecay: try number("lr_decay", Float.self))
        let record = TrainingRecord(
            options: options,
            position: TrainingPosition(epoch: try number("epoch", Int.self), position: try number("position", Int.self)),
            dataset: dataset, trainSamples: try number("train_samples", Int.self))
        guard options.batchSize >= 1, record.trainSamples >= 1, record.position.epoch >= 0,
            (0..<record.trainSamples).contains(record.position.position)
        else {
            throw TrainingRecordError(path: path, fault: "inconsistent training state \(metadata)")
        }
        // A run saved before its first step has no optimizer buffers yet; later ones must.
        if record.position != TrainingPosition() {
            if options.rule.usesVelocity, velocity == nil {
                throw TrainingRecordError(path: path, fault: "\(optimizer.rawValue) run without the momentum tensors")
            }
            if options.rule.usesSecondMoment, secondMoment == nil {
                throw TrainingRecordError(path: path, fault: "adam run without the second_moment tensors")
            }
        }
        return record
    }
}
