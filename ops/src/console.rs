//! The terminal: log lines and progress bars that never interleave.
//!
//! Both go to stderr. A log line written while a bar is drawn would land in
//! the middle of it (the bar redraws over the line, or the line breaks the
//! bar in two). So the log writer asks the bar on screen, if any, to step
//! aside while it writes ([`ProgressBar::suspend`]): the line lands above the
//! bar and the bar is drawn again below it. Commands show a bar through
//! [`progress_bar`], which registers it until it is finished.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;
use std::sync::Mutex;

/// The bar on screen, if any.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A bar for `template` (indicatif's syntax), shown until it is finished
/// and registered so that log lines print above it.
pub fn progress_bar(length: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(length);
    bar.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    if let Ok(mut active) = ACTIVE.lock() {
        *active = Some(bar.clone());
    }
    bar
}

/// The log's writer: stderr, above the progress bar when one is drawn.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        // The fmt layer formats an event into one buffer and writes it whole.
        let bar = ACTIVE
            .lock()
            .ok()
            .and_then(|active| active.clone())
            .filter(|bar| !bar.is_finished());
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(line))?,
            None => std::io::stderr().write_all(line)?,
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}
