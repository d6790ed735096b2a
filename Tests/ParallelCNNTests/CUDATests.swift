import Foundation
import Testing
import ParallelCNN

/// CUDA without a GPU: NVRTC compiles the kernels (CI installs the pip wheel and sets
/// `PCNN_REQUIRE_NVRTC=1`, so a missing NVRTC fails instead of skipping).
enum NVRTCSupport {
    static let required = ProcessInfo.processInfo.environment["PCNN_REQUIRE_NVRTC"] == "1"
    static let found: Bool = { if case .success = NVRTC.shared { true } else { false } }()
    static let trait: ConditionTrait = .enabled(
        if: found || required, "NVRTC not found (\(NVRTC.remedy)); PCNN_REQUIRE_NVRTC=1 fails instead")
    static let driverPresent: Bool = dlopen("libcuda.so.1", RTLD_NOW) != nil
}

/// How NVRTC and a driver are matched, from fake versions: no GPU or NVRTC needed.
@Suite("NVRTC choices")
struct NVRTCChoiceTests {
    @Test("a GPU's own CUBIN, else a binary-compatible one of its major, else PTX the driver compiles, else none")
    func target() {
        let supported = [75, 80, 86, 89, 90]
        #expect(NVRTC.target(forDevice: 90, supported: supported) == .cubin("sm_90"))
        #expect(NVRTC.target(forDevice: 87, supported: supported) == .cubin("sm_86"))
        #expect(NVRTC.target(forDevice: 120, supported: supported) == .ptx("compute_90"))
        #expect(NVRTC.target(forDevice: 103, supported: supported) == .ptx("compute_90"))
        #expect(NVRTC.target(forDevice: 70, supported: supported) == nil)
    }

    @Test("the NVRTC no newer than the driver is tried first, the newest of those first")
    func preferredByDriver() {
        let candidates = [
            "/env/nvidia/cu13/lib/libnvrtc.so.13", "/usr/local/cuda/lib64/libnvrtc.so.12", "/site/nvidia/cuda_nvrtc/lib/libnvrtc.so",
            "/usr/lib/libnvrtc.so.11.2", "libnvrtc.so"
        ]
        #expect(NVRTC.preferred(candidates, driverMajor: nil) == candidates)
        #expect(NVRTC.preferred(candidates, driverMajor: 13) == candidates)
        #expect(
            NVRTC.preferred(candidates, driverMajor: 12) == [
                "/usr/local/cuda/lib64/libnvrtc.so.12", "/site/nvidia/cuda_nvrtc/lib/libnvrtc.so", "/usr/lib/libnvrtc.so.11.2",
                "/env/nvidia/cu13/lib/libnvrtc.so.13", "libnvrtc.so"
            ])
        #expect(NVRTC.preferred(candidates, driverMajor: 11).first == "/usr/lib/libnvrtc.so.11.2")
    }
}

@Suite("CUDA kernels through NVRTC", .serialized, NVRTCSupport.trait)
struct CUDACompileTests {
    @Test("every kernel compiles to a CUBIN; the fused kernels do not spill", arguments: ["sm_75", "sm_80", "sm_90"])
    func compiles(architecture: String) throws {
        let nvrtc = try NVRTC.shared.get()
        let (cubin, log) = try nvrtc.compile(source: KernelSource.text, architecture: architecture, defines: KernelSource.defines)
        #expect(!cubin.isEmpty)
        let kernels = NVRTC.resources(fromLog: log)
        #expect(Set(kernels.map(\.name)) == Set(KernelSource.kernelNames), "ptxas log:\n\(log)")
        for kernel in kernels where kernel.name.hasPrefix("fused") || kernel.name == "batch_update" {
            #expect(kernel.spillStores == 0 && kernel.spillLoads == 0, "\(architecture) \(kernel.name) spills: \(kernel)")
            #expect(kernel.registers > 0 && kernel.registers <= 255)
        }
    }

    @Test(
        "the kernels generated for paper, lenet5, CIFAR-shaped and random networks compile for sm_80 and sm_90, every one named, none spilling",
        arguments: ["sm_80", "sm_90"])
    func generatedCompile(architecture: String) throws {
        let nvrtc = try NVRTC.shared.get()
        let networks = [
            Architecture.paper, try Architecture(.named("lenet5"), input: .mnist),
            try Architecture(
                .named("conv 8 3x3 pad=1 relu; maxpool 2x2; conv 16 3x3 stride=2 tanh; avgpool 2x2; dense 10"), input: .cifar10),
            SmallNetworks.random(seed: 5, input: SmallNetworks.rgb)
        ]
        for network in networks {
            let generated = NetworkKernels(network)
            let (cubin, log) = try nvrtc.compile(source: generated.source, architecture: architecture, defines: generated.defines)
            #expect(!cubin.isEmpty)
            let kernels = NVRTC.resources(fromLog: log)
            #expect(Set(kernels.map(\.name)) == Set(generated.kernelNames), "\(network): ptxas log:\n\(log)")
            for kernel in kernels {
                #expect(kernel.spillStores == 0 && kernel.spillLoads == 0, "\(architecture) \(network) \(kernel.name) spills: \(kernel)")
            }
        }
    }

    @Test("a failure other than a compile error keeps NVRTC's log (an architecture it does not know)")
    func otherFailureKeepsLog() throws {
        let nvrtc = try NVRTC.shared.get()
        #expect {
            _ = try nvrtc.compile(source: KernelSource.text, architecture: "sm_9", defines: KernelSource.defines)
        } throws: { error in
            guard case DeviceError.driver(_, _, let code, let message) = error else { return false }
            return code != 0 && message.contains("compiler log") && message.contains("--gpu-architecture")
        }
    }

    @Test("PTX for a virtual architecture, for a GPU newer than this NVRTC")
    func ptx() throws {
        let generated = NetworkKernels(try Architecture(.named("lenet5"), input: .mnist))
        let (ptx, _) = try NVRTC.shared.get().compile(source: generated.source, architecture: "compute_80", defines: generated.defines)
        let text = String(decoding: ptx, as: UTF8.self)
        #expect(text.contains(".target sm_80"))
        #expect(text.contains(".entry conv_backward_1"))
    }

    @Test("this NVRTC lists what it supports, and its choice for each current GPU is a CUBIN")
    func supported() throws {
        let nvrtc = try NVRTC.shared.get()
        let supported = try #require(nvrtc.supportedArchitectures)
        #expect(supported.contains(90))
        #expect(try nvrtc.target(forDevice: 90) == .cubin("sm_90"))
    }

    @Test("a compile error carries NVRTC's log verbatim")
    func compileError() throws {
        let nvrtc = try NVRTC.shared.get()
        let error = try #require(throws: DeviceError.self) {
            _ = try nvrtc.compile(
                source: "extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }",
                architecture: "sm_80", defines: [:])
        }
        guard case .compilation(_, let log) = error else { Issue.record("expected a compilation error, got \(error)"); return }
        #expect(log.contains("undefined_name"))
    }

    @Test("ptxas resource lines are parsed per kernel")
    func parsesResources() {
        let log = """
            ptxas info    : Compiling entry function 'a' for 'sm_90'
            ptxas info    : Function properties for a
                8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads
            ptxas info    : Used 40 registers, used 1 barriers, 28204 bytes smem
            ptxas info    : Compiling entry function 'b' for 'sm_90'
            ptxas info    : Used 31 registers, used 0 barriers
            """
        let r = NVRTC.resources(fromLog: log)
        #expect(r.map(\.name) == ["a", "b"])
        #expect(r.first?.registers == 40 && r.first?.sharedBytes == 28204 && r.first?.spillStores == 4 && r.first?.spillLoads == 12)
        #expect(r.last?.registers == 31 && r.last?.spillLoads == 0)
    }
}

@Suite("CUDA engine without a driver", .enabled(if: !NVRTCSupport.driverPresent, "this machine has a CUDA driver"))
struct CUDAAbsentTests {
    @Test("opening the engine fails with a typed error and a one-line remedy")
    func failsWithRemedy() throws {
        let error = try #require(throws: DeviceError.self) {
            _ = try DeviceEngine(backend: .cuda, strategy: .fused, parameters: Initialization.original.makeParameters())
        }
        guard case .libraryNotFound(let library, _, let remedy) = error else { Issue.record("got \(error)"); return }
        #expect(library == "libcuda.so.1")
        #expect(!remedy.contains("\n") && remedy.contains("--engine opencl"))
        let availability = DeviceBackend.cuda.availability()
        #expect(!availability.isAvailable && !(availability.remedy ?? "").contains("\n"))
    }

    @Test("pcnn train --engine cuda fails at once with a one-line remedy")
    func trainFails() throws {
        let result = try CLI.run(["train", "--engine", "cuda", "--no-save", "--limit", "10"])
        #expect(result.status != 0)
        let lines = result.output.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("libcuda.so.1") && lines[0].contains("--engine opencl"), "\(result.output)")
    }

    @Test("pcnn devices names what is missing and how to get it")
    func devicesCommand() throws {
        let result = try CLI.run(["devices"])
        #expect(result.status == 0, "\(result.output)")
        #expect(result.output.contains("CUDA (cuda engine):") && result.output.contains("libcuda.so.1 not found"))
        #expect(result.output.contains("OpenCL (opencl engine):"))
    }
}
