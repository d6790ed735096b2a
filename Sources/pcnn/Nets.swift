import ArgumentParser
import Foundation
import ParallelCNN

/// `pcnn nets`: the preset networks with their size and work, or one description checked.
struct Nets: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the preset networks (or check one --net description) with parameters and FLOPs per sample.",
        discussion: """
            A network is written as layers separated by ';' or new lines, each a keyword with values and \
            key=value options, optionally followed by an activation:
              conv F KxK [stride=S] [pad=P] [sigmoid|tanh|relu]   F filters of KxK over every input channel
              subsample KxK [act]                                 the paper's s1: one shared KxK kernel and bias, stride K
              avgpool KxK [stride=S] | maxpool KxK [stride=S]     stride defaults to K
              dense N [act]                                       fully connected
              sigmoid | tanh | relu                               an activation on its own
            The last layer must be 'dense 10': the recipe applies the output rule (sigmoid with SPEC's \
            error for original, softmax cross-entropy for modern). Shapes follow the data set's images \
            (1x28x28 for MNIST and Fashion-MNIST, 3x32x32 for CIFAR-10).

            Examples:
              pcnn train --net lenet5 --recipe modern --epochs 10
              pcnn train --net "conv 8 3x3 pad=1 relu; maxpool 2x2; conv 16 3x3 relu; maxpool 2x2; dense 10" --recipe modern
            """)

    @OptionGroup var network: NetworkOption

    @Option(help: "Input shape the networks are sized for: mnist (1x28x28) or cifar10 (3x32x32).")
    var dataset: DatasetKind = .mnist

    func run() throws {
        let descriptions = try network.description().map { [$0] } ?? NetworkDescription.presets
        var rows: [[String]] = [["name", "parameters", "MFLOP/sample", "activations", "layers"]]
        for description in descriptions {
            let architecture: Architecture
            do {
                architecture = try Architecture(description, input: dataset.imageShape)
            } catch {
                throw fail("\(error)")
            }
            rows.append([
                description.presetName ?? "(given)", String(architecture.parameterCount),
                String(format: "%.3f", architecture.flopsPerTrainingSample / 1e6),
                String(architecture.activationCount), description.text
            ])
        }
        let widths = (0..<4).map { column in rows.map { $0[column].count }.max()! }
        for row in rows {
            let name = row[0].padding(toLength: widths[0], withPad: " ", startingAt: 0)
            let numbers = (1..<4).map { String(repeating: " ", count: widths[$0] - row[$0].count) + row[$0] }
            print(([name] + numbers + [row[4]]).joined(separator: "  "))
        }
        print("MFLOP/sample: one training sample (forward, backward and update); activations: floats per sample.")
    }
}
