import ArgumentParser
import Foundation
import ParallelCNN

/// `--model FILE` and the data it is evaluated on, shared by `test` and `predict`.
struct ModelOptions: ParsableArguments {
    @OptionGroup var source: DataOptions

    @Option(help: "Checkpoint written by `pcnn train`.")
    var model: String

    /// The checkpoint, its training record (errors name the file), and the data, which must have
    /// the input shape of the checkpoint's network.
    func load() throws -> (Checkpoint, TrainingRecord, DatasetPair) {
        let checkpoint = try Checkpoint.read(from: model)
        let record = try checkpoint.trainingRecord(path: model)
        let data = try source.load(download: true, log: note)
        if record.dataset != source.dataset, data.test.shape == checkpoint.architecture.input {
            note(
                "warning: \(model) was trained on \(record.dataset.rawValue), and is evaluated on \(source.dataset.rawValue) (--dataset \(record.dataset.rawValue) evaluates it on its own data set)"
            )
        }
        guard data.test.shape == checkpoint.architecture.input else {
            throw ValidationError(
                "\(model) holds a network for \(checkpoint.architecture.input) images, but \(source.dataset.rawValue) has \(data.test.shape) images; pass the --dataset it was trained on (\(record.dataset.rawValue))"
            )
        }
        return (checkpoint, record, data)
    }
}

struct Test: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a checkpoint on the 10000 test images.")

    @OptionGroup var options: ModelOptions

    @OptionGroup var engine: EngineOptionGroup

    @Flag(help: "Print one JSON object on standard output.")
    var json = false

    func run() throws {
        do {
            _ = try engine.processGroup()
            let (checkpoint, record, data) = try options.load()
            let model = options.model
            let instance = try engine.makeEngine(parameters: checkpoint.parameters, architecture: checkpoint.architecture)
            let errors = try instance.countErrors(on: data.test, recipe: record.options.recipe)
            let percent = 100 * Double(errors) / Double(data.test.count)
            let position = record.position
            let trained =
                position.position == 0
                ? "\(position.epoch) epoch(s)"
                : "\(position.epoch) epoch(s) and \(position.position) samples of epoch \(position.epoch + 1)"
            let summary = String(
                format: "%@: %@, %@ recipe, %@; test error %.2f%% (%d/%d), parameter hash %@",
                model, checkpoint.architecture.network.description, record.options.recipe.rawValue, trained, percent,
                errors, data.test.count, checkpoint.parameters.hashString)
            // The result is the command's output: on standard output, unless JSON takes it.
            if json { note(summary) } else if !silent { print(summary) }
            if json && !silent {
                let object: [String: Any] = [
                    "model": model, "network": checkpoint.architecture.network.text, "recipe": record.options.recipe.rawValue,
                    "epoch": record.position.epoch,
                    "test_errors": errors, "test_error_percent": percent, "param_hash": checkpoint.parameters.hashString
                ]
                print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
            }
        } catch let error as ValidationError {
            // Found while running, not in the arguments' syntax: an error, without the usage.
            throw fail(error.message)
        } catch {
            throw fail("\(error)")
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show one test image as text with the network's prediction and scores.")

    @OptionGroup var options: ModelOptions

    @OptionGroup var engine: EngineOptionGroup

    @Option(help: "Index of the test image (0-9999).")
    var index: Int

    func run() throws {
        do {
            _ = try engine.processGroup()
            let (checkpoint, record, data) = try options.load()
            guard (0..<data.test.count).contains(index) else {
                throw ValidationError("--index must be between 0 and \(data.test.count - 1), got \(index)")
            }
            let recipe = record.options.recipe
            let instance = try engine.makeEngine(parameters: checkpoint.parameters, architecture: checkpoint.architecture)
            var predicted: UInt8 = 0
            try withUnsafeMutablePointer(to: &predicted) {
                try instance.predict(
                    data.test, range: index..<(index + 1), recipe: recipe, into: UnsafeMutableBufferPointer(start: $0, count: 1))
            }
            let best = Int(predicted)
            // The scores come from the oracle, which every engine agrees with.
            let scores = ReferenceEngine(parameters: checkpoint.parameters, architecture: checkpoint.architecture)
                .probabilities(of: data.test, sample: index, recipe: recipe)
            guard !silent else { return }
            print(DigitArt.render(data.test.image(index), shape: data.test.shape))
            let label = Int(data.test.labels[index])
            let names = options.source.dataset.classNames
            func named(_ c: Int) -> String { names.map { "\(c) (\($0[c]))" } ?? "\(c)" }
            print(
                "test image \(index): label \(named(label)), predicted \(named(best)) by \(instance.description) \(best == label ? "(correct)" : "(WRONG)")"
            )
            print(recipe == .original ? "sigmoid outputs:" : "softmax probabilities:")
            for (o, score) in scores.enumerated() {
                let bar = String(repeating: "#", count: Int((max(0, min(1, score)) * 40).rounded()))
                print(String(format: "  %d %@ %.4f %@%@", o, o == best ? ">" : " ", score, bar, names.map { " \($0[o])" } ?? ""))
            }
        } catch let error as ValidationError {
            // Found while running, not in the arguments' syntax: an error, without the usage.
            throw fail(error.message)
        } catch {
            throw fail("\(error)")
        }
    }
}

enum DigitArt {
    /// An image's first channel (values 0...1) as one line of text per row, two characters per
    /// pixel (which keeps the aspect).
    static func render(_ image: ArraySlice<Float>, shape: ImageShape) -> String {
        let shades = Array(" .:-=+*#%@")
        var lines: [String] = []
        let start = image.startIndex
        for r in 0..<shape.height {
            var line = ""
            for c in 0..<shape.width {
                let v = image[start + r * shape.width + c]
                let ch = shades[min(shades.count - 1, Int(v * Float(shades.count - 1) + 0.5))]
                line.append(ch); line.append(ch)
            }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}
