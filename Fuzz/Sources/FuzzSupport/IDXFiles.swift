import Foundation
import ParallelCNN

#if canImport(Glibc)
import Glibc
#endif

/// The IDX readers take paths, so each input goes through one scratch file per process, in
/// /dev/shm when it exists (memory, not disk: tens of thousands of writes per second).
public enum IDXFuzzing {
    /// A directory private to this process, created on first use.
    public static let directory: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let path = "\(base)/pcnn-fuzz-\(getpid())"
        mkdir(path, 0o700)
        atexit { try? FileManager.default.removeItem(atPath: IDXFuzzing.directory) }
        return path
    }()

    /// Writes `bytes` to the scratch file `name` (replacing it) and returns its path.
    public static func write(_ bytes: UnsafeRawBufferPointer, name: String) -> String {
        let path = directory + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(fd >= 0, "cannot create \(path): \(String(cString: strerror(errno)))")
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            precondition(n > 0, "cannot write \(path)")
            done += n
        }
        close(fd)
        return path
    }

    /// Reads `path` as an images file and as a labels file. A reader may refuse a file (that is
    /// what most inputs get), but it must never trap, and what it accepts must be well formed.
    public static func readBoth(_ path: String) {
        if let pixels = try? IDX.readImages(at: path) {
            precondition(pixels.count % Network.imagePixels == 0, "images: \(pixels.count) bytes is not whole images")
            precondition(pixels.count / Network.imagePixels <= IDX.maxCount, "images: more than IDX.maxCount")
        }
        if let labels = try? IDX.readLabels(at: path) {
            precondition(labels.allSatisfy { Int($0) < Network.classes }, "labels: a label above 9 was accepted")
            precondition(labels.count <= IDX.maxCount, "labels: more than IDX.maxCount")
        }
    }
}
