//! Standard output for every subcommand: a closed pipe is not an error.
//!
//! `mandate revocations --db D | head -1` closes the pipe after one line.
//! `println!` would panic on the next write; here the write fails with
//! [`Closed`], the command stops, and `main` exits 0 without a word, as
//! `cat` or `grep` do. Any other write failure (a full disk, a file closed
//! under us) stays an error. Nothing else maps to [`Closed`]: a broken
//! connection to NATS or an upstream is an I/O error of its own, not a
//! reader that went away.
//!
//! The crate denies `clippy::print_stdout`: every write to standard output
//! goes through [`Out`], `outln!` or [`write_bytes`].

use std::io::{self, BufWriter, Stdout, Write};

/// The reader of standard output went away (EPIPE): stop writing, exit 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for Closed {}

/// Marks a broken pipe on standard output as [`Closed`]; other errors pass.
fn mark(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, Closed)
    } else {
        e
    }
}

/// Whether `e` is (or was caused by) standard output being closed.
pub(crate) fn is_closed(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|cause| cause.is::<Closed>() || cause.downcast_ref::<io::Error>().is_some_and(closed))
}

/// Whether a write to standard output failed because its reader went away.
pub(crate) fn closed(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Closed>())
}

/// For a command whose exit code is a verdict (`verify`, `audit verify`):
/// output its reader no longer wants is dropped, and the verdict's exit code
/// stands. Exit 0 for a denied request because nobody read the denial would
/// tell a pipeline with `pipefail` that it was allowed.
pub(crate) fn unless_closed(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if closed(&e) => Ok(()),
        r => r,
    }
}

/// Buffered standard output for long outputs (an audit export, a list):
/// call [`Out::finish`] at the end, so a failing last write is reported.
pub(crate) struct Out(BufWriter<Stdout>);

impl Out {
    pub(crate) fn new() -> Out {
        Out(BufWriter::new(io::stdout()))
    }

    /// Flushes what is buffered; a closed pipe is [`Closed`].
    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.flush()
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark)
    }
}

/// Writes `bytes` to standard output and flushes; a closed pipe is [`Closed`].
pub(crate) fn write_bytes(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes).map_err(mark)?;
    out.flush().map_err(mark)
}

/// Writes formatted text to standard output and flushes.
pub(crate) fn write_fmt(args: std::fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args).map_err(mark)?;
    out.flush().map_err(mark)
}

/// `println!` that returns an [`io::Result`] instead of panicking: use with
/// `?`; a closed pipe ends the command with exit 0 (see the module docs).
macro_rules! outln {
    () => {
        $crate::out::write_fmt(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_closed_and_nothing_else_is() {
        let closed = anyhow::Error::from(mark(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(is_closed(&closed));
        assert!(is_closed(&closed.context("writing the list")));
        assert!(is_closed(&anyhow::Error::from(Closed)));
        // A broken pipe elsewhere (a NATS or upstream connection) is an error.
        let elsewhere = anyhow::Error::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!is_closed(&elsewhere));
        let full = anyhow::Error::from(mark(io::Error::other("no space left on device")));
        assert!(!is_closed(&full));
        // A verdict's writes drop a closed pipe and keep other errors.
        assert!(unless_closed(Err(mark(io::Error::from(io::ErrorKind::BrokenPipe)))).is_ok());
        assert!(unless_closed(Err(io::Error::other("disk full"))).is_err());
    }
}
