//! Runnable Mandate scenarios live in `examples/examples/`; this library is
//! empty and only hosts them. Run one with, e.g.:
//!
//! ```text
//! cargo run -p mandate-examples --example support_delegation
//! ```
