//! Requests written byte for byte on a TCP socket, for the tests whose point
//! is a request no real HTTP client would send: non-canonical request-targets
//! (`/a/../b`, `/a/./b`, `%2e%2e`, `\`) that clients normalise or refuse
//! (reqwest and the `url` crate resolve dot segments and turn `\` into `/`),
//! and request lines whose method is not an HTTP token (`tools/list`), which
//! `http::Method` refuses. Every ordinary request goes through
//! [`super::procs::http_client`] instead.
#![allow(dead_code, clippy::unwrap_used, missing_docs, unreachable_pub)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `method target HTTP/1.1` exactly as given, with `Host: gw`, the
/// `headers` (`"Name: value"` each), a JSON `body` and `Connection: close`,
/// in one write (a server that refuses the request line may close the
/// connection before later pieces arrive); (status, body text). Status 0 if
/// the server closed the connection without an answer.
pub fn request(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[&str],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: gw\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    let request = format!(
        "{head}Content-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}
