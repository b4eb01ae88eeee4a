//! Writes the conformance vectors (SPEC §10.2) into a directory, normally
//! `spec/samples/`: `vectors.json` and `tokens/NNN.bc`. The same seed
//! writes the same bytes; `tests/tests/conformance.rs` checks that the
//! committed files are what this writes.
//!
//! Usage: `conformance-vectors DIR`

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: conformance-vectors DIR   (normally spec/samples)");
        return ExitCode::from(2);
    };
    let dir = PathBuf::from(dir);
    match write(&dir) {
        Ok(n) => {
            println!("wrote {n} files to {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

fn write(dir: &std::path::Path) -> std::io::Result<usize> {
    let files = mandate_tests::conformance::generate();
    // Old token files go: a case removed must not leave its token behind.
    let tokens = dir.join("tokens");
    if tokens.is_dir() {
        for entry in std::fs::read_dir(&tokens)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "bc") {
                std::fs::remove_file(path)?;
            }
        }
    }
    std::fs::create_dir_all(&tokens)?;
    for (name, contents) in &files {
        std::fs::write(dir.join(name), contents)?;
    }
    Ok(files.len())
}
