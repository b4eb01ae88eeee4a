//! Shared harness for the CLI tests: run the built `mandate` binary, and the
//! quickstart scenario (issuer, support agent, sub-agent, their tokens).
#![allow(dead_code, clippy::unwrap_used, missing_docs, unreachable_pub)]

pub mod browser;
pub mod crafted;
pub mod payments;
pub mod procs;
pub mod raw_http;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn mandate(dir: &Path, args: &[&str]) -> Run {
    mandate_stdin(dir, args, None)
}

pub fn mandate_stdin(dir: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut pipe = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            pipe.write_all(s.as_bytes()).unwrap();
        }
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    };
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("stack backtrace"),
        "mandate {args:?} panicked: {}",
        run.stderr
    );
    run
}

/// Asserts a bad-input failure: exit 2, exactly one line on stderr
/// (warnings aside), containing `needle`.
pub fn assert_bad_input(run: &Run, needle: &str) {
    assert_eq!(run.code, 2, "stdout={} stderr={}", run.stdout, run.stderr);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.starts_with("warning:"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {}", run.stderr);
    assert!(
        lines[0].contains(needle),
        "expected {needle:?} in {:?}",
        lines[0]
    );
}

/// The quickstart: issuer, support agent, sub-agent, and their tokens.
pub struct Scenario {
    pub dir: tempfile::TempDir,
    pub issuer_pub: String,
    pub support_pub: String,
    pub sub_pub: String,
}

impl Scenario {
    pub fn new() -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let key = |name: &str| {
            let r = mandate(dir.path(), &["keygen", "--out", name]);
            assert_eq!(r.code, 0, "{}", r.stderr);
            r.stdout.trim().to_string()
        };
        let issuer_pub = key("issuer.key");
        let support_pub = key("support.key");
        let sub_pub = key("sub.key");
        let s = Scenario {
            dir,
            issuer_pub,
            support_pub,
            sub_pub,
        };
        let r = s.run(&[
            "issue",
            "--key",
            "issuer.key",
            "--principal",
            "user:alice",
            "--to",
            "support-agent",
            "--to-key",
            &s.support_pub.clone(),
            "--allow",
            "read,list:/api/customers/*",
            "--where",
            "rows<=100",
            "--ttl",
            "1h",
            "--max-depth",
            "2",
            "--purpose",
            "answer support tickets",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        s.write("support.tok", &r.stdout);
        let r = s.run(&[
            "attenuate",
            "--key",
            "support.key",
            "--to",
            "sub-agent",
            "--to-key",
            &s.sub_pub.clone(),
            "--allow",
            "read:/api/customers/*",
            "--ttl",
            "10m",
            "--purpose",
            "look up customer 42",
            "support.tok",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        s.write("sub.tok", &r.stdout);
        s
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &str) {
        std::fs::write(self.path(name), content).unwrap();
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Run {
        mandate(self.dir.path(), args)
    }

    pub fn verify(&self, token: &str, action: &str, resource: &str, params: &[&str]) -> Run {
        let mut args = vec![
            "verify",
            "--public-key",
            &self.issuer_pub,
            "--action",
            action,
            "--resource",
            resource,
        ];
        for p in params {
            args.push("--param");
            args.push(p);
        }
        args.push(token);
        self.run(&args)
    }
}
