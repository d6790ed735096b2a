import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import ParallelCNN

/// `pcnn train` killed with SIGKILL at random moments across two epochs, resumed from its
/// checkpoint each time, must end with the parameters of an uninterrupted run; the checkpoint
/// under its final name must always be whole.
@Suite("Kill anywhere: SIGKILL mid-run, resume, same result", .serialized, TestData.mnistTrait)
struct KillAnywhereTests {
    /// A configuration under test: the engine's arguments and whether it runs under mpirun.
    struct Configuration: CustomTestStringConvertible, Sendable {
        let name: String
        let arguments: [String]
        let ranks: Int?
        var testDescription: String { name }
    }

    static let configurations: [Configuration] = {
        var all = [
            Configuration(name: "sequential", arguments: ["--engine", "sequential"], ranks: nil),
            Configuration(
                name: "threads data", arguments: ["--engine", "threads", "--strategy", "data", "--threads", "2", "--batch", "64"],
                ranks: nil),
            // Adam's two moments and its step count (bias correction) must survive the kill too.
            Configuration(
                name: "threads data, modern (Adam)",
                arguments: ["--engine", "threads", "--strategy", "data", "--threads", "2", "--recipe", "modern", "--batch", "64"],
                ranks: nil)
        ]
        #if MPI
        all.append(
            Configuration(name: "mpi data, 2 ranks", arguments: ["--engine", "mpi", "--strategy", "data", "--batch", "64"], ranks: 2))
        #endif
        return all
    }()

    /// Starts `pcnn` (under mpirun for `ranks`). Foundation starts a child in a process group
    /// of its own, so `kill(-pid, SIGKILL)` takes the run and whatever it started.
    static func start(_ arguments: [String], ranks: Int?, log: URL) throws -> Process {
        let binary = try #require(CLI.binary, "pcnn was not built next to the tests")
        var command = [binary.path] + arguments
        if let ranks {
            let mpirun = try #require(MPIRun.mpirun, "mpirun not found: apt-get install openmpi-bin")
            command = [mpirun, "--oversubscribe", "-np", "\(ranks)"] + command
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        environment["PCNN_MNIST_MIRRORS"] = "http://127.0.0.1:9/"
        process.environment = environment
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Kills the process group of `process`, and any rank that left it (its command line names
    /// `marker`, the test's own directory), and waits until none of them is left.
    static func killAll(_ process: Process, marker: String) {
        let group = process.processIdentifier
        kill(-group, SIGKILL)
        process.waitUntilExit()
        for _ in 0..<500 {
            _ = try? runProcess("pkill", ["-KILL", "-f", marker])
            if kill(-group, 0) != 0, (try? runProcess("pgrep", ["-f", marker]))?.status == 1 { break }
            usleep(10_000)
        }
    }

    static func json(of output: String) -> [String: Any]? {
        output.split(separator: "\n").last { $0.hasPrefix("{") }
            .flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    static func finalHash(of output: String) -> String? { json(of: output)?["param_hash"] as? String }

    @Test(
        "SIGKILL at 5 random points across two epochs, resuming each time, ends at the uninterrupted hash",
        arguments: configurations)
    func killAndResume(configuration: Configuration) throws {
        if configuration.ranks != nil, MPIRun.mpirun == nil {
            #expect(ProcessInfo.processInfo.environment["PCNN_REQUIRE_MPI"] != "1", "mpirun not found")
            return
        }
        let data = try TestData.requireMNISTDirectory()
        let common = ["train", "--data", data, "--epochs", "2", "--json"] + configuration.arguments
        try TestData.withTemporaryDirectory { dir in
            let log = dir.appendingPathComponent("log.txt")
            let whole = try Self.start(common + ["--no-save"], ranks: configuration.ranks, log: log)
            whole.waitUntilExit()
            let wholeOutput = try String(contentsOf: log, encoding: .utf8)
            let expected = try #require(Self.finalHash(of: wholeOutput), "uninterrupted run failed:\n\(wholeOutput)")
            let epochSeconds = try #require(Self.json(of: wholeOutput)?["seconds_per_epoch"] as? [Double])
            let trainingSeconds = epochSeconds.reduce(0, +)

            let seed = UInt64(Date().timeIntervalSince1970 * 1000)
            var rng = SplitMix64(seed: seed)
            let checkpoint = dir.appendingPathComponent("run.safetensors").path
            let resumable = common + ["--save", checkpoint, "--checkpoint-interval", "0.02"]
            var kills = 0, resumedFrom: [String] = [], aims: [String] = []
            for k in 0..<5 {
                var done = 0.0  // fraction of the two epochs the checkpoint holds
                if FileManager.default.fileExists(atPath: checkpoint) {
                    let record = try Checkpoint.read(from: checkpoint).trainingRecord(path: checkpoint)
                    done = (Double(record.position.epoch) + Double(record.position.position) / Double(record.trainSamples)) / 2
                }
                let runLog = dir.appendingPathComponent("run\(k).txt")
                let process = try Self.start(
                    done > 0 ? resumable + ["--resume", checkpoint] : resumable,
                    ranks: configuration.ranks, log: runLog)
                // Once the data is loaded ("Training ..."), a random moment of what is left to train.
                let deadline = Date().addingTimeInterval(60)
                while process.isRunning, Date() < deadline,
                    !((try? String(contentsOf: runLog, encoding: .utf8)) ?? "").split(separator: "\n").contains(where: {
                        $0.hasPrefix("Training ")
                    })
                {
                    usleep(1_000)
                }
                let aim = Double.random(in: 0.05...0.95, using: &rng)
                aims.append(String(format: "%.2f", done + aim * (1 - done)))
                usleep(UInt32(aim * (1 - done) * trainingSeconds * 1e6))
                if process.isRunning { kills += 1 }
                Self.killAll(process, marker: dir.path)
                if FileManager.default.fileExists(atPath: checkpoint) {
                    // Whatever moment the kill came, the file under the final name is whole.
                    let record = try Checkpoint.read(from: checkpoint).trainingRecord(path: checkpoint)
                    resumedFrom.append("epoch \(record.position.epoch) sample \(record.position.position)")
                }
            }
            let exists = FileManager.default.fileExists(atPath: checkpoint)
            let last = try Self.start(
                exists ? resumable + ["--resume", checkpoint] : resumable,
                ranks: configuration.ranks, log: log)
            last.waitUntilExit()
            let output = try String(contentsOf: log, encoding: .utf8)
            #expect(last.terminationStatus == 0, "\(output)")
            // A kill aimed at the last moments can land after the run has ended (two epochs take
            // well under a second here); most must hit a running process.
            #expect(kills >= 3, "only \(kills) of 5 kills hit a running process (seed \(seed))")
            #expect(
                Self.finalHash(of: output) == expected,
                "seed \(seed), checkpoints after each kill: \(resumedFrom)\n\(output)")
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter {
                $0.hasPrefix("run.safetensors") && $0 != "run.safetensors"
            }
            #expect(leftovers.isEmpty || leftovers.allSatisfy { !$0.hasSuffix(".safetensors") }, "\(leftovers)")
            print(
                "kill anywhere, \(configuration.name): \(kills) kills aimed at \(aims) of the run (seed \(seed)), checkpoints \(resumedFrom), final hash \(expected)"
            )
        }
    }
}
