import Foundation

/// NVRTC, the CUDA runtime compiler, loaded with `dlopen`. It needs no GPU: `pcnn devices
/// --compile-cuda` compiles every kernel with it and reports ptxas's registers and spills.
public final class NVRTC: @unchecked Sendable {
    typealias Program = OpaquePointer?
    typealias Version = @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Int32
    typealias CreateProgram =
        @convention(c) (
            UnsafeMutablePointer<Program>, UnsafePointer<CChar>, UnsafePointer<CChar>?, Int32, UnsafePointer<UnsafePointer<CChar>?>?,
            UnsafePointer<UnsafePointer<CChar>?>?
        ) -> Int32
    typealias Compile = @convention(c) (Program, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    typealias GetSize = @convention(c) (Program, UnsafeMutablePointer<Int>) -> Int32
    typealias GetBytes = @convention(c) (Program, UnsafeMutablePointer<CChar>) -> Int32
    typealias Destroy = @convention(c) (UnsafeMutablePointer<Program>) -> Int32
    typealias ErrorString = @convention(c) (Int32) -> UnsafePointer<CChar>?

    private let versionFn: Version
    private let createProgram: CreateProgram
    private let compileProgram: Compile
    private let logSize: GetSize
    private let log: GetBytes
    private let cubinSize: GetSize
    private let cubin: GetBytes
    private let destroy: Destroy
    private let errorString: ErrorString
    /// The file that was loaded.
    public let path: String

    public static let remedy = """
        Install NVRTC: `python3 -m pip install nvidia-cuda-nvrtc` (no GPU needed), or the CUDA toolkit, \
        or point PCNN_NVRTC at libnvrtc.so
        """

    /// Where NVRTC is looked for, in order: $PCNN_NVRTC, $CUDA_HOME, the usual CUDA directories,
    /// then the pip wheels' site-packages (nvidia/cu13/lib, nvidia/cuda_nvrtc/lib) of the active
    /// virtual environment, ./.venv, the user's and the system's Pythons.
    public static func candidates() -> [String] {
        let env = ProcessInfo.processInfo.environment
        var paths: [String] = []
        if let p = env["PCNN_NVRTC"], !p.isEmpty { paths.append(p) }
        let names = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"]
        var dirs: [String] = []
        if let home = env["CUDA_HOME"] ?? env["CUDA_PATH"] { dirs += ["\(home)/lib64", "\(home)/lib", "\(home)/targets/x86_64-linux/lib"] }
        dirs += [
            "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib64",
            "/opt/cuda/lib64"
        ]
        var sitePackages: [String] = []
        let fm = FileManager.default
        var pythonRoots: [String] = []
        if let v = env["VIRTUAL_ENV"] { pythonRoots.append("\(v)/lib") }
        pythonRoots.append(fm.currentDirectoryPath + "/.venv/lib")
        if let home = env["HOME"] { pythonRoots.append("\(home)/.local/lib") }
        pythonRoots += ["/usr/local/lib", "/usr/lib", "/opt/conda/lib"]
        for root in pythonRoots {
            for entry in ((try? fm.contentsOfDirectory(atPath: root)) ?? []).sorted().reversed() where entry.hasPrefix("python3") {
                sitePackages += ["\(root)/\(entry)/site-packages", "\(root)/\(entry)/dist-packages"]
            }
        }
        for site in sitePackages { dirs += ["\(site)/nvidia/cu13/lib", "\(site)/nvidia/cuda_nvrtc/lib"] }
        for dir in dirs {
            for name in names where fm.fileExists(atPath: "\(dir)/\(name)") { paths.append("\(dir)/\(name)") }
        }
        paths += names  // the dynamic linker's own search (LD_LIBRARY_PATH, ld.so.cache)
        return paths
    }

    /// The loaded compiler, or why none could be loaded.
    public static let shared: Result<NVRTC, DeviceError> = {
        var tried: [String] = []
        for path in candidates() {
            let (handle, errors) = SharedLibrary.open([path])
            tried += errors
            if let handle {
                do { return .success(try NVRTC(handle, path: path)) } catch let e as DeviceError { return .failure(e) } catch {}
            }
        }
        return .failure(.libraryNotFound(library: "libnvrtc.so", tried: Array(tried.suffix(4)), remedy: remedy))
    }()

    private init(_ h: UnsafeMutableRawPointer, path: String) throws {
        func f<T>(_ name: String, _ t: T.Type) throws -> T { try SharedLibrary.symbol(h, name, library: path, as: t) }
        self.path = path
        versionFn = try f("nvrtcVersion", Version.self)
        createProgram = try f("nvrtcCreateProgram", CreateProgram.self)
        compileProgram = try f("nvrtcCompileProgram", Compile.self)
        logSize = try f("nvrtcGetProgramLogSize", GetSize.self)
        log = try f("nvrtcGetProgramLog", GetBytes.self)
        cubinSize = try f("nvrtcGetCUBINSize", GetSize.self)
        cubin = try f("nvrtcGetCUBIN", GetBytes.self)
        destroy = try f("nvrtcDestroyProgram", Destroy.self)
        errorString = try f("nvrtcGetErrorString", ErrorString.self)
    }

    /// "13.0" and so on.
    public var version: String {
        var major: Int32 = 0, minor: Int32 = 0
        _ = versionFn(&major, &minor)
        return "\(major).\(minor)"
    }

    private func check(_ code: Int32, _ call: String) throws {
        guard code == 0 else {
            throw DeviceError.driver(
                backend: "nvrtc", call: call, code: Int(code), message: errorString(code).map { String(cString: $0) } ?? "")
        }
    }

    /// Compiles `source` to a CUBIN for `architecture` (e.g. "sm_90"), returning it with the
    /// compiler's log (ptxas's resource lines included). A rejected source throws
    /// `DeviceError.compilation` with the log verbatim.
    public func compile(source: String, architecture: String, defines: [String: String]) throws -> (cubin: [UInt8], log: String) {
        var program: Program = nil
        try check(createProgram(&program, source, "parallelcnn.cu", 0, nil, nil), "nvrtcCreateProgram")
        defer { _ = destroy(&program) }
        let options =
            ["--gpu-architecture=\(architecture)", "--fmad=false", "--ptxas-options=-v", "-default-device"]
            + defines.sorted { $0.key < $1.key }.map { "-D\($0.key)=\($0.value)" }
        let status = options.withCStrings { compileProgram(program, Int32(options.count), $0) }
        var size = 0
        _ = logSize(program, &size)
        var text = [CChar](repeating: 0, count: max(size, 1) + 1)
        if size > 0 { _ = log(program, &text) }
        let logText = String(nulTerminated: text)
        if status == 6 /* NVRTC_ERROR_COMPILATION */ { throw DeviceError.compilation(backend: "nvrtc \(architecture)", log: logText) }
        try check(status, "nvrtcCompileProgram(\(architecture))")
        var binarySize = 0
        try check(cubinSize(program, &binarySize), "nvrtcGetCUBINSize")
        var binary = [CChar](repeating: 0, count: binarySize)
        try check(cubin(program, &binary), "nvrtcGetCUBIN")
        return (binary.map { UInt8(bitPattern: $0) }, logText)
    }

    /// One kernel's resources as ptxas reported them.
    public struct KernelResources: Sendable, Equatable {
        public var name: String
        public var registers = 0
        public var sharedBytes = 0
        public var stackBytes = 0
        public var spillStores = 0
        public var spillLoads = 0
    }

    /// Parses ptxas's `-v` lines ("Compiling entry function 'k'", "N bytes stack frame, N bytes
    /// spill stores, N bytes spill loads", "Used N registers, ... N bytes smem") per kernel.
    public static func resources(fromLog log: String) -> [KernelResources] {
        var result: [KernelResources] = []
        func number(before word: String, in line: Substring) -> Int? {
            guard let r = line.range(of: word) else { return nil }
            let head = line[..<r.lowerBound].trimmingCharacters(in: .whitespaces)
            return Int(head.split(separator: " ").last.map(String.init) ?? "")
        }
        for line in log.split(separator: "\n") {
            if let r = line.range(of: "Compiling entry function '") {
                let rest = line[r.upperBound...]
                result.append(KernelResources(name: String(rest.prefix { $0 != "'" })))
            } else if !result.isEmpty {
                let parts = line.split(separator: ",")
                for part in parts {
                    if let n = number(before: "registers", in: part) { result[result.count - 1].registers = n }
                    if let n = number(before: "bytes smem", in: part) { result[result.count - 1].sharedBytes = n }
                    if let n = number(before: "bytes stack frame", in: part) { result[result.count - 1].stackBytes = n }
                    if let n = number(before: "bytes spill stores", in: part) { result[result.count - 1].spillStores = n }
                    if let n = number(before: "bytes spill loads", in: part) { result[result.count - 1].spillLoads = n }
                }
            }
        }
        return result
    }
}

extension Array where Element == String {
    /// Calls `body` with a C array of the strings (valid only inside `body`).
    func withCStrings<R>(_ body: (UnsafePointer<UnsafePointer<CChar>?>) throws -> R) rethrows -> R {
        let copies = map { strdup($0) }
        defer { copies.forEach { Foundation.free($0) } }
        let pointers = copies.map { UnsafePointer<CChar>($0) }
        return try pointers.withUnsafeBufferPointer { try body($0.baseAddress!) }
    }
}
