//! Progress on the terminal: a line redrawn a few times a second while work runs, cleared after.
//! Nothing is drawn when stderr is not a terminal (logs and pipes get the summary only).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hitgate::pipeline::Progress;

/// How often the line is redrawn.
const REDRAW: Duration = Duration::from_millis(200);

/// A text bar for a fraction done.
pub fn bar(fraction: f64) -> String {
    let n = (fraction.clamp(0.0, 1.0) * 30.0) as usize;
    format!("[{}{}] {:>3.0}%", "#".repeat(n), ".".repeat(30 - n), fraction * 100.0)
}

/// Runs `work` while `line` is redrawn on the terminal.
pub fn while_running<T: Send>(line: impl Fn() -> String + Sync, work: impl FnOnce() -> T + Send) -> T {
    if !std::io::stderr().is_terminal() {
        return work();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(REDRAW);
                eprint!("\r{}", line());
            }
            eprint!("\r\x1b[2K");
        });
        let result = work();
        done.store(true, Ordering::Relaxed);
        result
    })
}

/// A replay's line: how far through the file, frames judged and kept.
pub fn replay_line(progress: &Progress) -> String {
    format!(
        "{} {} frames, {} accepted",
        bar(progress.fraction()),
        progress.frames_done.load(Ordering::Relaxed),
        progress.frames_accepted.load(Ordering::Relaxed)
    )
}

/// A live run's line: bytes received, frames judged and kept.
pub fn live_line(progress: &Progress) -> String {
    format!(
        "{:.3} GB received, {} frames, {} accepted",
        progress.input_bytes_read.load(Ordering::Relaxed) as f64 / 1e9,
        progress.frames_done.load(Ordering::Relaxed),
        progress.frames_accepted.load(Ordering::Relaxed)
    )
}
