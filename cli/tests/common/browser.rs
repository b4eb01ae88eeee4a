//! A real headless browser for the HTML tests: Debian's chromium driven by
//! chromedriver over the W3C WebDriver protocol (through `fantoccini`), with
//! the flags that keep it off the network.
//!
//! The tests are synchronous: [`Browser`] owns a small tokio runtime and
//! blocks on each WebDriver command.
#![allow(dead_code, clippy::unwrap_used, missing_docs, unreachable_pub)]

use super::procs::free_port;
use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn start() -> Browser {
        let port = free_port();
        let mut driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver must be installed (scripts/setup.sh installs chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() >= deadline {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("chromedriver did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1600,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!("capabilities are an object")
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Plain HTTP to chromedriver on loopback: no TLS connector needed.
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = rt.block_on(
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}")),
        );
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("no WebDriver session: {e}");
            }
        };
        Browser {
            rt,
            client: Some(client),
            driver,
            _profile: profile,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    pub fn goto(&self, url: &str) {
        self.rt
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("navigating to {url}: {e}"));
    }

    /// Runs `script` in the page; its return value.
    pub fn eval(&self, script: &str) -> Value {
        self.rt
            .block_on(self.client().execute(script, vec![]))
            .unwrap_or_else(|e| panic!("running {script:?}: {e}"))
    }

    /// Sets a cookie for the current page's host (path `/`, SameSite Lax).
    pub fn add_cookie(&self, name: &str, value: &str) {
        self.rt
            .block_on(async {
                // fantoccini sends an unset domain as `null`, which chromedriver
                // refuses: name the current page's host.
                // (and an unset SameSite as `None`, which needs Secure).
                let url = self.client().current_url().await?;
                let host = url.host_str().unwrap_or("localhost");
                let cookie = Cookie::parse(format!(
                    "{name}={value}; Domain={host}; Path=/; SameSite=Lax"
                ))
                .unwrap_or_else(|e| panic!("cookie {name}: {e}"));
                self.client().add_cookie(cookie).await
            })
            .unwrap_or_else(|e| panic!("setting a cookie: {e}"));
    }

    /// Clicks the element `css` selects, as a person would (WebDriver's
    /// click: scrolled into view, the real pointer events).
    pub fn click(&self, css: &str) {
        self.rt
            .block_on(async {
                let e = self.client().find(fantoccini::Locator::Css(css)).await?;
                e.click().await
            })
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        self.rt
            .block_on(async {
                let e = self.client().find(fantoccini::Locator::Css(css)).await?;
                e.send_keys(text).await
            })
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Sends `keys` to the focused element, as a keyboard would (WebDriver
    /// key codes: [`TAB`], [`ENTER`], or text).
    pub fn press(&self, keys: &str) {
        self.rt
            .block_on(async { self.client().active_element().await?.send_keys(keys).await })
            .unwrap_or_else(|e| panic!("pressing {keys:?}: {e}"));
    }

    /// Resizes the browser window (e.g. to a phone's width).
    pub fn set_window_size(&self, width: u32, height: u32) {
        self.rt
            .block_on(self.client().set_window_size(width, height))
            .unwrap_or_else(|e| panic!("resizing the window: {e}"));
    }

    /// A PNG screenshot of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        self.rt
            .block_on(self.client().screenshot())
            .unwrap_or_else(|e| panic!("taking a screenshot: {e}"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            // Ends the session (chromium exits); errors do not matter here.
            let _ = self.rt.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The Tab key, for [`Browser::press`].
pub const TAB: &str = "\u{E004}";
/// The Enter key, for [`Browser::press`].
pub const ENTER: &str = "\u{E007}";

/// Where the screenshots of a test run go: `$CARGO_TARGET_DIR/screenshots`
/// (beside the test binaries), created if missing.
pub fn screenshot_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // …/target/release/deps/test-binary → …/target/screenshots
    let dir = exe
        .ancestors()
        .nth(3)
        .unwrap_or(std::path::Path::new("."))
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
