//! Progress bars with ETA on the terminal (hidden when stderr is not one); phase summaries are
//! always printed, so logs keep one line per epoch or phase.

use std::sync::Mutex;
use std::time::Duration;

use donna_sdk::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// The CLI's [`Progress`].
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new() -> Self {
        Self { bar: Mutex::new(None) }
    }
}

impl Progress for Bars {
    fn start(&self, phase: &str, total: u64) {
        let bar = ProgressBar::new(total);
        let style = ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos}/{len} {msg} (ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(phase.to_owned());
        bar.enable_steady_tick(Duration::from_millis(500));
        if let Some(old) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, units: u64, status: &str) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            bar.inc(units);
            if !status.is_empty() {
                bar.set_message(status.to_owned());
            }
        }
    }

    fn finish(&self, summary: &str) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
        if !summary.is_empty() {
            eprintln!("{summary}");
        }
    }
}
