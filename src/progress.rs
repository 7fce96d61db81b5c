//! A small progress display for long work: a redrawn bar on a terminal, plain lines
//! otherwise (logs, CI, pipes).
//!
//! Progress goes to **stderr**, never stdout: the library writes nothing to stdout by itself,
//! so a program's own output (results, CSV, JSON) stays clean when piped. A program that
//! wants progress elsewhere passes [`ProgressStyle::Callback`].
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Where and how progress is shown.
#[derive(Clone, Copy, Debug, Default)]
pub enum ProgressStyle {
    /// A bar on stderr when stderr is a terminal, otherwise a line on stderr every 10% of
    /// the work.
    #[default]
    Auto,
    /// Always plain lines on stderr.
    Lines,
    /// A bar on stderr when stderr is a terminal, nothing otherwise (for short passes such as
    /// evaluation).
    BarOnly,
    /// Nothing.
    Off,
    /// Calls the function with every update instead of printing: `(label, done, total,
    /// message)`.
    Callback(fn(&str, usize, usize, &str)),
}

impl PartialEq for ProgressStyle {
    fn eq(&self, other: &Self) -> bool {
        use ProgressStyle::*;
        match (self, other) {
            (Callback(a), Callback(b)) => std::ptr::fn_addr_eq(*a, *b),
            (Auto, Auto) | (Lines, Lines) | (BarOnly, BarOnly) | (Off, Off) => true,
            _ => false,
        }
    }
}

impl Eq for ProgressStyle {}

/// Progress of one pass over `total` steps.
pub struct Progress {
    label: String,
    total: usize,
    done: usize,
    bar: bool,
    off: bool,
    started: Instant,
    last_line: usize,
    callback: Option<fn(&str, usize, usize, &str)>,
}

impl Progress {
    /// Starts showing progress of `total` steps under `label`.
    pub fn new(label: &str, total: usize, style: ProgressStyle) -> Self {
        Progress {
            label: label.to_string(),
            total: total.max(1),
            done: 0,
            bar: matches!(style, ProgressStyle::Auto | ProgressStyle::BarOnly)
                && std::io::stderr().is_terminal(),
            off: style == ProgressStyle::Off
                || (style == ProgressStyle::BarOnly && !std::io::stderr().is_terminal()),
            started: Instant::now(),
            last_line: 0,
            callback: match style {
                ProgressStyle::Callback(f) => Some(f),
                _ => None,
            },
        }
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Marks `steps` more steps done and shows `message` (e.g. running loss and accuracy).
    pub fn advance(&mut self, steps: usize, message: &str) {
        // Saturating and widened: `steps` and `total` are the caller's, up to `usize::MAX`.
        self.done = self.done.saturating_add(steps).min(self.total);
        let share = |of: usize| (of as u128 * self.done as u128 / self.total as u128) as usize;
        if let Some(f) = self.callback {
            f(&self.label, self.done, self.total, message);
            return;
        }
        if self.off {
            return;
        }
        let mut err = std::io::stderr().lock();
        if self.bar {
            let width = 30;
            let filled = share(width);
            let _ = write!(
                err,
                "\r{} [{}{}] {}/{} {message}  ",
                self.label,
                "=".repeat(filled),
                " ".repeat(width - filled),
                self.done,
                self.total
            );
            let _ = err.flush();
        } else {
            let tenth = share(10);
            if tenth > self.last_line && tenth < 10 {
                self.last_line = tenth;
                let _ = writeln!(
                    err,
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
        if self.bar && !self.off && self.callback.is_none() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}\r", " ".repeat(100));
            let _ = err.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_step_counts_saturate_instead_of_overflowing() {
        // `done + steps`, `10 * done` and `30 * done` overflowed for counts near usize::MAX.
        for style in [
            ProgressStyle::Lines,
            ProgressStyle::Off,
            ProgressStyle::Auto,
        ] {
            let mut p = Progress::new("huge", usize::MAX, style);
            p.advance(usize::MAX / 2, "");
            p.advance(usize::MAX, "");
            assert_eq!(p.done, usize::MAX);
            p.finish();
        }
        let mut p = Progress::new("empty", 0, ProgressStyle::Lines);
        p.advance(3, "");
        assert_eq!((p.done, p.total), (1, 1));
    }
}
