import Foundation
import Testing
import ParallelCNN

/// The built `pcnn` next to the test bundle.
enum CLI {
    static let binary: URL? = {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates =
            [beside, beside.deletingLastPathComponent()].map { $0.appendingPathComponent("pcnn") }
            + ["release", "debug"].map { TestData.packageRoot.appendingPathComponent(".build/\($0)/pcnn") }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }()

    static func run(_ arguments: [String], in directory: URL? = nil) throws -> (status: Int32, output: String) {
        let binary = try #require(binary, "pcnn was not built next to the tests")
        var environment = ProcessInfo.processInfo.environment
        environment["PCNN_MNIST_MIRRORS"] = "http://127.0.0.1:9/"  // never reach the internet from tests
        return try runProcess(binary.path, arguments, environment: environment, currentDirectory: directory)
    }
}

@Suite("pcnn command line", .serialized, TestData.mnistTrait)
struct CLITests {
    @Test("train on 3000 samples: accuracy floor, JSON fields, checkpoint usable by test and predict")
    func endToEnd() throws {
        let data = try TestData.requireMNISTDirectory()
        try TestData.withTemporaryDirectory { dir in
            let model = dir.appendingPathComponent("m.safetensors").path
            let train = try CLI.run([
                "train", "--data", data, "--recipe", "modern", "--epochs", "2", "--limit", "3000",
                "--batch", "4", "--lr", "0.02", "--save", model, "--json"
            ])
            #expect(train.status == 0, "\(train.output)")
            let jsonLine = try #require(train.output.split(separator: "\n").first { $0.hasPrefix("{") })
            let object = try #require(try JSONSerialization.jsonObject(with: Data(jsonLine.utf8)) as? [String: Any])
            let error = try #require(object["test_error_percent"] as? Double)
            // Measured: 11.8%. Chance is 90%; a broken gradient or update stays far above 20%.
            #expect(error < 20, "3000 samples x 2 epochs should reach under 20% test error, got \(error)%")
            #expect((object["seconds_per_epoch"] as? [Double])?.count == 2)
            #expect(object["engine"] as? String == "sequential")
            #expect(object["recipe"] as? String == "modern")
            let hash = try #require(object["param_hash"] as? String)
            #expect(hash.count == 16)

            let test = try CLI.run(["test", "--data", data, "--model", model, "--json"])
            #expect(test.status == 0, "\(test.output)")
            #expect(test.output.contains("\"param_hash\":\"\(hash)\""))
            #expect(test.output.contains(String(format: "%.2f%%", error)))

            let predict = try CLI.run(["predict", "--data", data, "--model", model, "--index", "0"])
            #expect(predict.status == 0, "\(predict.output)")
            #expect(predict.output.contains("label 7"))
            #expect(predict.output.contains("@@"))

            // Resume to a third epoch equals training three epochs at once.
            let resumed = try CLI.run(["train", "--data", data, "--resume", model, "--epochs", "3", "--save", model, "--json"])
            let straight = try CLI.run([
                "train", "--data", data, "--recipe", "modern", "--epochs", "3", "--limit", "3000",
                "--batch", "4", "--lr", "0.02", "--no-save", "--json"
            ])
            #expect(resumed.status == 0 && straight.status == 0, "\(resumed.output)\n\(straight.output)")
            let hashOf = { (s: String) in s.split(separator: "\"param_hash\":\"").last.map { String($0.prefix(16)) } }
            #expect(hashOf(resumed.output) != nil && hashOf(resumed.output) == hashOf(straight.output))
        }
    }

    @Test(
        "bad arguments are rejected with a clear message",
        arguments: [
            (["train", "--epochs", "0"], "--epochs"),
            (["train", "--batch", "0"], "--batch"),
            (["train", "--lr", "-1"], "--lr"),
            (["train", "--engine", "gpu"], "engine"),
            (["train", "--optimizer", "lion"], "optimizer"),
            (["train", "--limit", "0"], "--limit"),
            (["train", "--engine", "threads", "--threads", "0"], "--threads"),
            (["train", "--engine", "threads", "--threads", "100000"], "--threads"),
            (["train", "--engine", "threads", "--threads", "two"], "--threads"),
            (["train", "--engine", "threads", "--strategy", "model"], "strategy"),
            (["predict", "--model", "/nonexistent.safetensors", "--index", "0"], "nonexistent"),
            (["bench", "sweep", "--net", "conv 0 5x5; dense 10"], "--net"),
            (["bench", "sweep", "--repeats", "0"], "--repeats"),
            (["bench", "sweep", "--batch", "0"], "--batch"),
            (["bench", "sweep", "--seconds", "-1"], "--seconds"),
            (["bench", "sweep", "--workers", "0"], "--workers"),
            (["bench", "net", "--passes"], "--passes"),
            (["bench", "net", "--rounds", "0"], "--rounds"),
            (["train", "--no-save", "--save", "x.safetensors"], "--no-save"),
            (["bench", "--quick"], "--quick applies to --sweep"),
            (["train", "--save", "/"], "not a regular file"),
            (["train", "--save", "/nonexistent-directory/m.safetensors"], "cannot create files")
        ])
    func badArguments(arguments: [String], mention: String) throws {
        let result = try CLI.run(arguments + ["--data", try TestData.requireMNISTDirectory()])
        #expect(result.status != 0)
        #expect(result.output.contains(mention), "\(result.output)")
    }

    @Test("bench net --passes: a row per pass of the network at batch 64 and 1, the update and the total")
    func benchPasses() throws {
        let result = try CLI.run([
            "bench", "net", "--data", try TestData.requireMNISTDirectory(), "--net",
            "conv 2 5x5 pad=2 relu; maxpool 2x2; conv 3 3x3; dense 10",
            "--samples", "16", "--threads", "2", "--passes"
        ])
        #expect(result.status == 0, "\(result.output)")
        let rows = result.output.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true) }
        for name in [
            "conv1 forward", "conv2 unfold", "conv2 forward", "relu1 forward", "maxpool1 forward", "dense1 forward", "output backward",
            "dense1 backward",
            "maxpool1 backward", "relu1 backward", "conv1 backward", "update (Adam)", "total"
        ] {
            let words = name.split(separator: " ")
            let row = rows.first { Array($0.prefix(words.count)) == words }
            // Both columns are times: numbers, the total's above zero.
            let figures = row.map { $0.dropFirst(words.count).compactMap { Double($0.replacingOccurrences(of: "%", with: "")) } } ?? []
            #expect(figures.count == 4 && figures.allSatisfy { $0 >= 0 }, "\(name): \(result.output)")
            if name == "total" { #expect(figures.first ?? 0 > 0) }
        }
    }

    @Test("bench net --json: a row per configuration, its figures consistent with each other and the optimizer asked for")
    func benchNetJSON() throws {
        let net = "conv 2 5x5 pad=2 relu; maxpool 2x2; dense 10"
        let result = try CLI.run([
            "bench", "net", "--data", try TestData.requireMNISTDirectory(), "--net", net, "--samples", "64", "--threads", "2",
            "--batch", "8", "--rounds", "2", "--optimizer", "sgd", "--json"
        ])
        #expect(result.status == 0, "\(result.output)")
        let line = try #require(result.output.split(separator: "\n").first { $0.hasPrefix("{") })
        let report = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(report["optimizer"] as? String == "sgd")
        let flops = try #require(report["flops_per_training_sample"] as? Double)
        let rows = try #require(report["rows"] as? [[String: Any]])
        let configurations = rows.map { "\($0["engine"] ?? "") \($0["strategy"] ?? "") \($0["threads"] ?? 0) \($0["batch"] ?? 0)" }
        #expect(configurations == ["sequential - 1 1", "threads layer 2 1", "sequential - 1 8", "threads data 2 8"])
        for row in rows {
            let seconds = try #require(row["seconds_per_sample"] as? Double)
            #expect(seconds > 0)
            #expect(abs((row["seconds_per_epoch_60000"] as? Double ?? 0) - 60_000 * seconds) <= 1e-9 * 60_000)
            #expect(abs((row["gflops"] as? Double ?? 0) - flops / seconds / 1e9) <= 1e-6 * flops / seconds / 1e9)
            #expect((row["peak_fraction"] as? Double ?? 0) > 0)
        }
        // Each speed-up is its baseline's time over the row's: sequential rows are their own baseline.
        let seconds = rows.map { $0["seconds_per_sample"] as? Double ?? 0 }
        let speedups = rows.map { $0["speedup"] as? Double ?? 0 }
        #expect(speedups[0] == 1 && speedups[2] == 1)
        #expect(abs(speedups[1] - seconds[0] / seconds[1]) <= 1e-9 * speedups[1])
        #expect(abs(speedups[3] - seconds[2] / seconds[3]) <= 1e-9 * speedups[3])
    }

    @Test("a resumed run saves back into its checkpoint; --save through a symbolic link writes the link's target")
    func checkpointPaths() throws {
        let data = try TestData.requireMNISTDirectory()
        try TestData.withTemporaryDirectory { dir in
            let common = ["--data", data, "--limit", "200", "--recipe", "modern", "--batch", "8"]
            let first = try CLI.run(["train", "--save", "m.safetensors"] + common, in: dir)
            #expect(first.status == 0, "\(first.output)")
            let resumed = try CLI.run(["train", "--data", data, "--resume", "m.safetensors", "--epochs", "2"], in: dir)
            #expect(resumed.status == 0, "\(resumed.output)")
            let checkpoint = try Checkpoint.read(from: dir.appendingPathComponent("m.safetensors").path)
            #expect(checkpoint.metadata["epoch"] == "2")
            #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("pcnn-model.safetensors").path))

            try FileManager.default.createSymbolicLink(atPath: dir.appendingPathComponent("link").path, withDestinationPath: "target")
            let linked = try CLI.run(["train", "--save", "link"] + common, in: dir)
            #expect(linked.status == 0, "\(linked.output)")
            let link = try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("link").path)
            #expect(link[.type] as? FileAttributeType == .typeSymbolicLink)
            #expect(try Checkpoint.read(from: dir.appendingPathComponent("target").path).metadata["epoch"] == "1")
        }
    }

    @Test("Ctrl-C stops a run cleanly: rc 130, a readable checkpoint, the JSON record of an interrupted run, a resume command")
    func interrupt() throws {
        let data = try TestData.requireMNISTDirectory()
        let binary = try #require(CLI.binary, "pcnn was not built next to the tests")
        try TestData.withTemporaryDirectory { dir in
            let model = dir.appendingPathComponent("m.safetensors").path
            let out = dir.appendingPathComponent("out"), err = dir.appendingPathComponent("err")
            for file in [out, err] { _ = FileManager.default.createFile(atPath: file.path, contents: nil) }
            let process = Process()
            process.executableURL = binary
            // The reference engine: an epoch takes tens of seconds, so the stop lands mid-epoch.
            process.arguments = ["train", "--data", data, "--engine", "reference", "--save", model, "--json"]
            process.standardOutput = try FileHandle(forWritingTo: out)
            process.standardError = try FileHandle(forWritingTo: err)
            process.standardInput = FileHandle.nullDevice
            try process.run()
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            // Once training reports progress, interrupt it.
            var training = false
            for _ in 0..<600 where !training {
                usleep(100_000)
                training = (try? String(contentsOf: err, encoding: .utf8))?.contains("samples/s") ?? false
            }
            #expect(training, "no progress within a minute: \((try? String(contentsOf: err, encoding: .utf8)) ?? "")")
            kill(process.processIdentifier, SIGINT)
            process.waitUntilExit()
            let errors = (try? String(contentsOf: err, encoding: .utf8)) ?? ""
            #expect(process.terminationStatus == 130, "\(errors)")
            #expect(errors.contains("resume with: pcnn train --resume \(model) --epochs 1 --data \(data)"), "\(errors)")
            let checkpoint = try Checkpoint.read(from: model)
            let record = try checkpoint.trainingRecord(path: model)
            #expect(record.position.epoch == 0 && record.position.position > 0)
            let line = try #require(String(contentsOf: out, encoding: .utf8).split(separator: "\n").first { $0.hasPrefix("{") })
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["outcome"] as? String == "interrupted")
            #expect((object["stopped_at"] as? [String: Int])?["sample"] == record.position.position)
            #expect(object["param_hash"] as? String == checkpoint.parameters.hashString)
        }
    }

    @Test("a corrupt checkpoint is refused, naming the file")
    func corruptCheckpoint() throws {
        try TestData.withTemporaryDirectory { dir in
            let path = dir.appendingPathComponent("bad.safetensors").path
            try Data("not a checkpoint at all".utf8).write(to: URL(fileURLWithPath: path))
            let result = try CLI.run(["test", "--data", try TestData.requireMNISTDirectory(), "--model", path])
            #expect(result.status != 0)
            #expect(result.output.contains(path), "\(result.output)")
        }
    }

    @Test("no data anywhere and no reachable mirror: says how to point --data at files")
    func offline() throws {
        try TestData.withTemporaryDirectory { dir in
            var environment = ProcessInfo.processInfo.environment
            environment["MNIST_DIR"] = nil
            environment["PCNN_MNIST_MIRRORS"] = "http://127.0.0.1:9/"
            let binary = try #require(CLI.binary)
            let result = try runProcess(binary.path, ["train", "--limit", "10"], environment: environment, currentDirectory: dir)
            #expect(result.status != 0)
            #expect(result.output.contains("--data"), "\(result.output)")
        }
    }
}
