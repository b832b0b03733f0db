//! Progress on a terminal for the long commands (`bench`, `localnet`): a bar or a spinner on
//! stderr while stdout is a terminal, nothing otherwise (files, pipes and CI logs get the
//! printed lines alone).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether progress is drawn: stdout is a terminal.
fn drawn() -> bool {
    std::io::stdout().is_terminal()
}

/// A bar for `len` steps of `what`; hidden when stdout is not a terminal.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    if !drawn() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{msg} [{bar:32.cyan/blue}] {pos}/{len} ({per_sec}, {eta} left)",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    ProgressBar::new(len)
        .with_style(style)
        .with_message(what.to_string())
}

/// A spinner saying what is under way; hidden when stdout is not a terminal.
pub fn spinner(what: &str) -> ProgressBar {
    if !drawn() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let s = ProgressBar::new_spinner()
        .with_style(style)
        .with_message(what.to_string());
    s.enable_steady_tick(Duration::from_millis(100));
    s
}

/// Prints `line` on stdout above `bar` (or plainly when the bar is hidden).
pub fn println(bar: &ProgressBar, line: impl AsRef<str>) {
    if bar.is_hidden() {
        println!("{}", line.as_ref());
    } else {
        bar.suspend(|| println!("{}", line.as_ref()));
    }
}
