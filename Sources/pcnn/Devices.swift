import ArgumentParser
import Foundation
import ParallelCNN
import ParallelCNNBench

struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what this machine offers each engine (CPU, Open MPI, OpenCL, CUDA, NVRTC) and how to get what is missing.",
        discussion: """
            With --compile-cuda, compiles every CUDA kernel with NVRTC for the given architectures \
            (no GPU needed) and prints ptxas's registers, shared memory and spills per kernel: the \
            paper network's own kernels, then the kernels generated for --net (default paper) on \
            MNIST-shaped input. Any compile error fails the command.

            With --verify opencl|cuda, trains paper, lenet5 and a small network on 512 samples with \
            every device strategy (the generated kernels) and the reference engine, twice, and \
            prints PASS or FAIL per network and strategy: agreement within 5e-5 + 1e-3|ref| for \
            all but 1 in 1000 parameters and within 1e-3 for all, and the same hash on both runs. \
            Any FAIL fails the command. This is how a GPU machine without Swift runs the GPU \
            tests (scripts/gpu-check).
            """)

    @Option(
        name: .customLong("compile-cuda"), parsing: .unconditional,
        help: ArgumentHelp("Comma-separated architectures to compile the CUDA kernels for.", valueName: "sm_75,sm_80,sm_90"))
    var compileCUDA: String?

    @OptionGroup var network: NetworkOption

    @Option(help: ArgumentHelp("Check a GPU engine against the reference engine (see above).", valueName: "opencl|cuda"))
    var verify: DeviceBackend?

    @OptionGroup var source: DataOptions

    func run() throws {
        if let compileCUDA {
            let architectures = compileCUDA.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            guard !architectures.isEmpty, architectures.allSatisfy({ $0.hasPrefix("sm_") && Int($0.dropFirst(3)) != nil }) else {
                throw ValidationError("--compile-cuda takes architectures like sm_75,sm_80,sm_90")
            }
            let description = try network.description() ?? .paper
            let architecture: Architecture
            do { architecture = try Architecture(description, input: .mnist) } catch { throw ValidationError("--net: \(error)") }
            try Self.compileReport(architectures, network: NetworkKernels(architecture))
            return
        }
        if let verify {
            if case .unavailable(let remedy) = verify.availability() { throw fail("--verify \(verify.rawValue): \(remedy)") }
            let data: DatasetPair
            do { data = try source.load(download: true, log: note) } catch { throw fail("\(error)") }
            let checks: [DeviceAgreement.Check]
            do { checks = try DeviceAgreement.run(backend: verify, data: data.train, progress: { print($0) }) } catch {
                throw fail("--verify \(verify.rawValue): \(error)")
            }
            let failed = checks.filter { !$0.passed }.count
            print("\(verify.rawValue): \(checks.count - failed) of \(checks.count) checks passed")
            if failed > 0 { throw ExitCode.failure }
            return
        }
        Self.report()
    }

    static func report() {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        print("CPU: \(cores) cores, \(cpuModel()), widest vector \(vectorWidth())")
        print("  reference, sequential, threads engines: available (threads default: \(cores))")

        print("Open MPI (mpi engine):")
        let mpirun = which("mpirun")
        if MPIAvailability.built {
            print("  built with the MPI trait; mpirun: \(mpirun ?? "not found — apt-get install openmpi-bin")")
        } else {
            print("  not in this build: \(MPIAvailability.remedy)")
        }

        print("OpenCL (opencl engine):")
        do {
            let devices = try OpenCLDevice.deviceDescriptions()
            if devices.isEmpty { print("  loader present, no platform or device: \(DeviceBackend.opencl.availability().remedy ?? "")") }
            for (i, d) in devices.enumerated() { print("  device \(i): \(d)") }
        } catch {
            print("  missing: \(error)")
        }

        print("CUDA (cuda engine):")
        do {
            let driver = try CUDADevice.driverDescription()
            print("  driver \(driver.version)")
            if driver.devices.isEmpty { print("  no CUDA device") }
            for (i, d) in driver.devices.enumerated() { print("  device \(i): \(d)") }
        } catch {
            print("  missing: \(error)")
        }
        switch NVRTC.shared {
        case .success(let nvrtc): print("  NVRTC \(nvrtc.version) (\(nvrtc.path))")
        case .failure(let error): print("  NVRTC missing: \(error)")
        }

        print("Engines (--engine):")
        for engine in EngineRegistry.engines {
            switch engine.availability() {
            case .available(let detail): print("  \(engine.kind.rawValue): available (\(detail))")
            case .unavailable(let remedy): print("  \(engine.kind.rawValue): unavailable — \(remedy)")
            }
        }
    }

    static func compileReport(_ architectures: [String], network: NetworkKernels) throws {
        let nvrtc: NVRTC
        do { nvrtc = try NVRTC.shared.get() } catch { throw fail("\(error)") }
        print("NVRTC \(nvrtc.version) (\(nvrtc.path)), \(KernelSource.groupSize) threads per block, --fmad=false")
        print("arch    kernel                  registers  smem(B)  stack(B)  spill st(B)  spill ld(B)")
        var failed = false
        let programs = [
            ("the paper's kernels", KernelSource.text, KernelSource.defines, KernelSource.kernelNames.count),
            ("generated for \(network.architecture.network)", network.source, network.defines, network.kernelNames.count)
        ]
        for arch in architectures {
            for (program, source, defines, expected) in programs {
                do {
                    let started = Date()
                    let (cubin, log) = try nvrtc.compile(source: source, architecture: arch, defines: defines)
                    let kernels = NVRTC.resources(fromLog: log)
                    for k in kernels {
                        print(
                            arch.padding(toLength: 8, withPad: " ", startingAt: 0)
                                + k.name.padding(toLength: 24, withPad: " ", startingAt: 0)
                                + pad(k.registers, 9) + pad(k.sharedBytes, 9) + pad(k.stackBytes, 10) + pad(k.spillStores, 13)
                                + pad(k.spillLoads, 13))
                    }
                    let spills = kernels.reduce(0) { $0 + $1.spillStores + $1.spillLoads }
                    print(
                        "\(arch), \(program): \(kernels.count) kernels, \(spills) bytes of spills, CUBIN \(cubin.count) bytes, \(String(format: "%.2f", Date().timeIntervalSince(started))) s"
                    )
                    if kernels.count != expected {
                        note("\(arch), \(program): ptxas reported \(kernels.count) kernels, the source has \(expected); log:\n\(log)")
                        failed = true
                    }
                } catch {
                    note("\(arch), \(program): \(error)")
                    failed = true
                }
            }
        }
        if failed { throw ExitCode.failure }
    }

    private static func pad(_ n: Int, _ width: Int) -> String {
        let s = String(n)
        return String(repeating: " ", count: max(0, width - s.count)) + s + "  "
    }

    private static func cpuModel() -> String {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        return info.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) } ?? "unknown CPU"
    }

    private static func vectorWidth() -> String {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let flagsLine = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else { return "unknown" }
        let flags = Set(flagsLine.split(separator: " ").map(String.init))
        let fma = flags.contains("fma") ? ", FMA" : ""
        if flags.contains("avx512f") { return "AVX-512 (16 floats\(fma))" }
        if flags.contains("avx2") { return "AVX2 (8 floats\(fma))" }
        if flags.contains("avx") { return "AVX (8 floats)" }
        return "SSE2 (4 floats)"
    }

    private static func which(_ tool: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") {
            let path = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }
}
