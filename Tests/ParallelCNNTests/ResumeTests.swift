import Foundation
import Testing
import ParallelCNN

@Suite("Checkpoints: resume continues the same run", TestData.mnistTrait)
struct ResumeTests {
    /// Trains 2 epochs of `options` on 1000 samples; with `stopAfter`, stops after that many
    /// optimizer steps, round-trips through a checkpoint file into a fresh engine, and finishes.
    func finalHash(_ options: TrainingOptions, stopAfter: Int?) throws -> String {
        let data = try TestData.mnist()
        let subset = DatasetPair(train: data.train.prefix(1000), test: data.test.prefix(100))
        let record = TrainingRecord(options: options, position: TrainingPosition(), dataset: .mnist, trainSamples: 1000)
        let engine = SequentialEngine(parameters: options.initialization.makeParameters())
        let first = Trainer(engine: engine, data: subset, options: options)
        guard let stopAfter else {
            try first.run()
            return try engine.currentParameters().hashString
        }
        var steps = 0
        first.onProgress = { _ in }
        first.progressInterval = 0
        first.shouldStop = {
            steps += 1; return steps >= stopAfter
        }
        guard case .interrupted(let position) = try first.run() else {
            Issue.record("the run was not interrupted")
            return ""
        }
        return try TestData.withTemporaryDirectory { dir in
            let path = dir.appendingPathComponent("resume.safetensors").path
            var state = record
            state.position = position
            try Checkpoint(
                parameters: try engine.currentParameters(), optimizerState: try engine.currentOptimizerState(),
                record: state, engine: engine.description
            ).write(to: path)
            let checkpoint = try Checkpoint.read(from: path)
            let restored = try checkpoint.trainingRecord(path: path)
            #expect(restored == state)
            let fresh = SequentialEngine(parameters: checkpoint.parameters)
            try fresh.load(parameters: checkpoint.parameters, optimizerState: checkpoint.optimizerState)
            try Trainer(engine: fresh, data: subset, options: restored.options, start: restored.position).run()
            return try fresh.currentParameters().hashString
        }
    }

    @Test("modern recipe (Adam, shuffles): interrupted mid-epoch and at an epoch end", arguments: [5, 31, 32, 50])
    func modern(stopAfter: Int) throws {
        let options = TrainingOptions(recipe: .modern, epochs: 2, batchSize: 32, seed: 9, initialization: .seeded(9))
        #expect(try finalHash(options, stopAfter: stopAfter) == finalHash(options, stopAfter: nil))
    }

    @Test("modern recipe with momentum SGD: interrupted mid-epoch and at an epoch end", arguments: [5, 32])
    func modernMomentum(stopAfter: Int) throws {
        let options = TrainingOptions(
            recipe: .modern, optimizer: .sgd, epochs: 2, batchSize: 32, seed: 9,
            initialization: .seeded(9))
        #expect(try finalHash(options, stopAfter: stopAfter) == finalHash(options, stopAfter: nil))
    }

    @Test("the optimizer is recorded; a checkpoint without it is SGD; a run's buffers must be there")
    func optimizerRecord() throws {
        let record = TrainingRecord(
            options: TrainingOptions(recipe: .modern, batchSize: 16), position: TrainingPosition(epoch: 1),
            dataset: .mnist, trainSamples: 1000)
        let p = Parameters(), full = OptimizerState(velocity: Parameters(), secondMoment: Parameters())
        let adam = Checkpoint(parameters: p, optimizerState: full, record: record, engine: "test")
        #expect(adam.metadata["optimizer"] == "adam")
        #expect(try adam.trainingRecord(path: "a").options.rule.optimizer == .adam)

        // Written before Adam existed: no "optimizer" key, momentum tensors only.
        var old = Checkpoint(parameters: p, optimizerState: OptimizerState(velocity: Parameters()), record: record, engine: "test")
        old.metadata["optimizer"] = nil
        #expect(try old.trainingRecord(path: "old").options.rule.optimizer == .sgd)

        var unknown = adam
        unknown.metadata["optimizer"] = "lion"
        #expect(throws: TrainingRecordError.self) { try unknown.trainingRecord(path: "u") }
        var noSecondMoment = adam
        noSecondMoment.secondMoment = nil
        #expect(throws: TrainingRecordError.self) { try noSecondMoment.trainingRecord(path: "s") }
        var noVelocity = adam
        noVelocity.velocity = nil
        #expect(throws: TrainingRecordError.self) { try noVelocity.trainingRecord(path: "v") }
    }

    @Test("a training checkpoint records its tensors' hashes: a value changed in any group is refused, naming its hash")
    func damagedTensorsAreRefused() throws {
        let record = TrainingRecord(
            options: TrainingOptions(recipe: .modern, batchSize: 16), position: TrainingPosition(epoch: 1),
            dataset: .mnist, trainSamples: 1000)
        let state = OptimizerState(
            velocity: Parameters(values: (0..<Parameters.count).map { Float($0) * 1e-3 }),
            secondMoment: Parameters(values: (0..<Parameters.count).map { Float($0) * 1e-6 }))
        let intact = Checkpoint(parameters: Parameters(), optimizerState: state, record: record, engine: "test")
        #expect(try Checkpoint.decode(intact.encoded()) == intact)
        for key in [Checkpoint.parameterHashKey, Checkpoint.velocityHashKey, Checkpoint.secondMomentHashKey] {
            var damaged = intact
            switch key {
            case Checkpoint.parameterHashKey: damaged.parameters.values[100] = damaged.parameters.values[100].nextUp
            case Checkpoint.velocityHashKey: damaged.velocity!.values[2342] = -1
            default: damaged.secondMoment!.values[0] = 1
            }
            do {
                _ = try Checkpoint.decode(damaged.encoded(), path: "damaged.safetensors")
                Issue.record("a damaged \(key) was read")
            } catch let error as CheckpointError {
                guard case .hashMismatch(let path, let named, let recorded, _) = error else {
                    Issue.record("\(error)")
                    continue
                }
                #expect(path == "damaged.safetensors" && named == key && recorded == intact.metadata[key])
                #expect(error.description.contains("damaged"))
            }
        }
    }

    @Test("original recipe: interrupted mid-epoch", arguments: [1, 999, 1500])
    func original(stopAfter: Int) throws {
        let options = TrainingOptions(recipe: .original, epochs: 2)
        #expect(try finalHash(options, stopAfter: stopAfter) == finalHash(options, stopAfter: nil))
    }

    @Test("a checkpoint without training metadata is rejected with the file's name")
    func missingMetadata() throws {
        try TestData.withTemporaryDirectory { dir in
            let path = dir.appendingPathComponent("bare.safetensors").path
            try Checkpoint(parameters: Parameters()).write(to: path)
            #expect(throws: TrainingRecordError.self) { try Checkpoint.read(from: path).trainingRecord(path: path) }
            do {
                _ = try Checkpoint.read(from: path).trainingRecord(path: path)
            } catch {
                #expect("\(error)".contains(path))
            }
        }
    }
}
