//! A small progress display for long work: a redrawn bar on a terminal, plain lines
//! otherwise (logs, CI, pipes).

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Where and how progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ProgressStyle {
    /// A bar when stdout is a terminal, otherwise a line every 10% of the work.
    #[default]
    Auto,
    /// Always plain lines.
    Lines,
    /// A bar when stdout is a terminal, nothing otherwise (for short passes such as evaluation).
    BarOnly,
    /// Nothing.
    Off,
}

/// Progress of one pass over `total` steps.
pub struct Progress {
    label: String,
    total: usize,
    done: usize,
    bar: bool,
    off: bool,
    started: Instant,
    last_line: usize,
}

impl Progress {
    /// Starts showing progress of `total` steps under `label`.
    pub fn new(label: &str, total: usize, style: ProgressStyle) -> Self {
        Progress {
            label: label.to_string(),
            total: total.max(1),
            done: 0,
            bar: matches!(style, ProgressStyle::Auto | ProgressStyle::BarOnly)
                && std::io::stdout().is_terminal(),
            off: style == ProgressStyle::Off
                || (style == ProgressStyle::BarOnly && !std::io::stdout().is_terminal()),
            started: Instant::now(),
            last_line: 0,
        }
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Marks `steps` more steps done and shows `message` (e.g. running loss and accuracy).
    pub fn advance(&mut self, steps: usize, message: &str) {
        self.done = (self.done + steps).min(self.total);
        if self.off {
            return;
        }
        if self.bar {
            let width = 30;
            let filled = width * self.done / self.total;
            print!(
                "\r{} [{}{}] {}/{} {message}  ",
                self.label,
                "=".repeat(filled),
                " ".repeat(width - filled),
                self.done,
                self.total
            );
            let _ = std::io::stdout().flush();
        } else {
            let tenth = 10 * self.done / self.total;
            if tenth > self.last_line && tenth < 10 {
                self.last_line = tenth;
                println!(
                    "{} {:>3}% {}/{} {message}",
                    self.label,
                    tenth * 10,
                    self.done,
                    self.total
                );
            }
        }
    }

    /// Ends the display (clears the bar line).
    pub fn finish(&mut self) {
        if self.bar && !self.off {
            print!("\r{}\r", " ".repeat(100));
            let _ = std::io::stdout().flush();
        }
    }
}
