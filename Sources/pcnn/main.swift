import ParallelCNN
import Foundation
let dir = "/work/shared/datasets/mnist/"
func load(_ i: String, _ l: String, _ name: String) throws -> Dataset {
    let px = try IDX.readImages(at: dir + i); let lb = try IDX.readLabels(at: dir + l)
    return Dataset(name: name, images: px.map { Float(Double($0) / 255.0) }, labels: lb)
}
let train = try load("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "train")
let test = try load("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "test")
let pair = DatasetPair(train: train, test: test)
let p0 = Initialization.original.makeParameters()
print("init hash", p0.hashString, p0.values[Parameters.Offset.c1Bias], p0.values[0], p0.values[Parameters.Offset.s1Weight], p0.values[Parameters.Offset.fBias + 9])
let which = CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "sequential"
let engine: any Engine = which == "reference" ? ReferenceEngine(parameters: p0) : SequentialEngine(parameters: p0)
let opts = TrainingOptions(recipe: .original, epochs: 1)
let t = Trainer(engine: engine, data: pair, options: opts)
t.onEpoch = { r in print("epoch", r.epoch, r.seconds, r.meanLoss, r.testErrorPercent, String(r.parameterHash, radix: 16)) }
t.run()
