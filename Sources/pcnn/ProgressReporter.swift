import Foundation
import ParallelCNN

/// Shows training progress on standard error: a redrawn bar on a terminal, plain lines (about
/// every 10% of an epoch) otherwise.
final class ProgressReporter {
    private let isTerminal = isatty(STDERR_FILENO) == 1
    private let recipe: Recipe
    private var lastDecile = -1
    private var drawn = false

    init(recipe: Recipe) { self.recipe = recipe }

    func update(_ p: TrainingProgress) {
        let fraction = Double(p.samplesDone) / Double(max(1, p.samplesTotal))
        let rate = p.samplesPerSecond
        let eta = rate > 0 ? Double(p.samplesTotal - p.samplesDone) / rate : 0
        let s = p.statistics
        let errorPercent = s.samples > 0 ? 100 * Double(s.misclassified) / Double(s.samples) : 0
        let loss = s.samples > 0 ? s.lossSum / Double(s.samples) : 0
        let figures = String(
            format: "%7.0f samples/s  train error %5.2f%%  %@ %.4f  ETA %.1f s",
            rate, errorPercent, recipe == .original ? "SPEC error" : "loss", loss, eta)
        let header = "epoch \(p.epoch + 1)/\(p.epochs)"
        if isTerminal {
            let width = 30
            let filled = Int(fraction * Double(width))
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            let line = "\r\u{1B}[K\(header) \(bar) \(p.samplesDone)/\(p.samplesTotal) \(figures)"
            FileHandle.standardError.write(line.data(using: .utf8)!)
            drawn = true
        } else {
            let decile = Int(fraction * 10)
            if decile != lastDecile, decile < 10 || p.samplesDone == p.samplesTotal {
                lastDecile = decile
                note("\(header) \(p.samplesDone)/\(p.samplesTotal) \(figures)")
            }
        }
    }

    /// Ends the redrawn line before other output.
    func finishLine() {
        if drawn { FileHandle.standardError.write("\n".data(using: .utf8)!) }
        drawn = false
        lastDecile = -1
    }
}

/// Set by SIGINT, SIGTERM or SIGHUP (a closed terminal); the trainer stops at the next batch and a
/// checkpoint is written. A second signal kills the process as usual.
nonisolated(unsafe) var stopRequested: sig_atomic_t = 0

func installStopHandlers() {
    var handled = sigset_t()
    sigemptyset(&handled)
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        signal(sig) { received in
            stopRequested = 1
            signal(received, SIG_DFL)
        }
        sigaddset(&handled, sig)
    }
    // A child inherits its parent's blocked signals (a test runner's, a supervisor's thread's):
    // blocked, a Ctrl-C would never arrive.
    pthread_sigmask(SIG_UNBLOCK, &handled, nil)
}
