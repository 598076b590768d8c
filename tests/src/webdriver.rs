//! A tiny WebDriver client: start `chromedriver` on a free loopback port,
//! open a headless Chromium session and drive it over the W3C WebDriver HTTP
//! protocol with the blocking `ureq` client. Just what the UI test needs:
//! navigate, find by CSS, click, type, read text, run a script, screenshot.
//!
//! Chromium and chromedriver come from Debian's `chromium` and
//! `chromium-driver` (scripts/install-deps.sh); a missing one fails loudly.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The W3C element identifier key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long chromedriver may take to answer `/status`.
const DRIVER_START: Duration = Duration::from_secs(30);

/// A chromedriver process and one browser session; both end on drop.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
}

/// An element found on the page.
#[derive(Debug, Clone)]
pub struct Element(String);

fn find_program(names: &[&str]) -> String {
    for name in names {
        for dir in ["/usr/bin", "/usr/lib/chromium", "/usr/local/bin"] {
            let path = Path::new(dir).join(name);
            if path.exists() {
                return path.to_string_lossy().into_owned();
            }
        }
    }
    panic!(
        "none of {names:?} is installed: run scripts/install-deps.sh (Debian packages chromium, chromium-driver)"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Browser {
    /// Start chromedriver and a headless Chromium (window 1280x900).
    pub fn start() -> Browser {
        let driver_bin = find_program(&["chromedriver"]);
        let chromium = find_program(&["chromium"]);
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver_bin}: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser { driver, base, session: String::new() };
        let start = Instant::now();
        loop {
            let ready = ureq::get(&format!("{}/status", browser.base))
                .timeout(Duration::from_secs(2))
                .call()
                .ok()
                .and_then(|r| r.into_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            if let Ok(Some(status)) = browser.driver.try_wait() {
                panic!("chromedriver exited at start: {status}");
            }
            assert!(
                start.elapsed() < DRIVER_START,
                "chromedriver did not become ready within {DRIVER_START:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900",
                         "--no-first-run", "--no-default-browser-check"]
            }
        }}});
        let answer = browser.call("POST", "/session", Some(capabilities));
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromium did not start a session: {answer}"))
            .to_string();
        browser
    }

    /// A WebDriver command; panics with the driver's error on failure.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = ureq::request(method, &url).timeout(Duration::from_secs(60));
        let result = match body {
            Some(b) => request.send_json(b),
            None if method == "POST" => request.send_json(json!({})),
            None => request.call(),
        };
        match result {
            Ok(r) => r.into_json::<Value>().map_err(|e| e.to_string()),
            Err(ureq::Error::Status(code, r)) => {
                let v: Value = r.into_json().unwrap_or(Value::Null);
                Err(format!("{code}: {} {}", v["value"]["error"], v["value"]["message"]))
            }
            Err(e) => Err(e.to_string()),
        }
        .map(|v| v.get("value").cloned().unwrap_or(v))
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Load `url`.
    pub fn goto(&self, url: &str) {
        self.call("POST", &self.session_path("/url"), Some(json!({"url": url})));
    }

    /// The first element matching `css`, if any.
    pub fn try_find(&self, css: &str) -> Option<Element> {
        let body = json!({"using": "css selector", "value": css});
        self.try_call("POST", &self.session_path("/element"), Some(body))
            .ok()
            .and_then(|v| v[ELEMENT_KEY].as_str().map(|id| Element(id.to_string())))
    }

    /// The first element matching `css`; panics if there is none.
    pub fn find(&self, css: &str) -> Element {
        self.try_find(css).unwrap_or_else(|| panic!("no element matches {css:?}"))
    }

    /// Click `element`, or say why not. A page that re-renders (live
    /// updates replace table rows) makes an element found a moment ago
    /// "stale"; the click then did not happen and the caller may look the
    /// element up again.
    pub fn try_click(&self, element: &Element) -> Result<(), String> {
        self.try_call("POST", &self.session_path(&format!("/element/{}/click", element.0)), None)
            .map(drop)
    }

    /// Clear `element` (an input or textarea) and type `text` into it. For a
    /// file input, `text` is the path of the file to choose.
    pub fn type_into(&self, element: &Element, text: &str) {
        let _ = self.try_call(
            "POST",
            &self.session_path(&format!("/element/{}/clear", element.0)),
            None,
        );
        self.call(
            "POST",
            &self.session_path(&format!("/element/{}/value", element.0)),
            Some(json!({"text": text})),
        );
    }

    /// The rendered text of `element` (`""` if it went away meanwhile).
    pub fn text(&self, element: &Element) -> String {
        self.try_call("GET", &self.session_path(&format!("/element/{}/text", element.0)), None)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The text of the first element matching `css` (`""` if none).
    pub fn text_of(&self, css: &str) -> String {
        self.try_find(css).map(|e| self.text(&e)).unwrap_or_default()
    }

    /// Run `script` (a function body; `arguments` holds `args`) and return its value.
    pub fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
    }

    /// Save a PNG screenshot of the page to `path`.
    pub fn screenshot(&self, path: &Path) {
        let png = self.call("GET", &self.session_path("/screenshot"), None);
        let bytes = decode_base64(png.as_str().expect("base64 screenshot"));
        std::fs::write(path, bytes).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.try_call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (the screenshot encoding), without a dependency.
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(super::decode_base64("aGVsbG8="), b"hello");
        assert_eq!(super::decode_base64("aGVsbG8gd29ybGQ"), b"hello world");
        assert_eq!(super::decode_base64(""), b"");
    }
}
