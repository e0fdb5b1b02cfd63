//! A headless chromium driven through chromium-driver with the WebDriver protocol (JSON over
//! HTTP, spoken with reqwest: the few commands the UI tests need do not justify a client crate).
//! Every wait polls for a condition with a bound; none sleeps for a guessed time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

/// An element reference is an object with one key, which begins so (W3C names
/// `element-6066-11e4-a5cb-00ff0d00f2ee`; chromedriver answers with a key of its own).
const ELEMENT: &str = "element-";

/// How long a page may take to load, and a condition to become true.
const PATIENCE: Duration = Duration::from_secs(20);

/// A chromedriver process and one browser session in it; dropping it ends both.
pub struct Browser {
    driver: Child,
    port: u16,
    http: reqwest::Client,
    session_id: String,
    session: String,
    _profile: tempfile::TempDir,
}

/// Fails loudly, naming the package, when a tool the browser tests need is missing: they are
/// never skipped (scripts/test installs the tools).
fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(
        found,
        "{tool} is missing: install it (apt-get install -y {package}); scripts/test does"
    );
}

impl Browser {
    /// A browser with a new empty profile and a window `width` × `height` pixels.
    pub async fn start(width: u32, height: u32) -> Browser {
        require("chromium", "chromium");
        require("chromedriver", "chromium-driver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut driver = Command::new("chromedriver")
            .args([
                format!("--port={port}"),
                "--allowed-ips=127.0.0.1".to_owned(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = reqwest::Client::builder()
            .timeout(PATIENCE * 3)
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        // Chromedriver says when it is ready; this waits for that, not for a guessed time.
        let started = Instant::now();
        loop {
            if let Ok(response) = http.get(format!("{base}/status")).send().await
                && let Ok(status) = response.json::<Value>().await
                && status["value"]["ready"] == true
            {
                break;
            }
            if started.elapsed() > PATIENCE {
                let _ = driver.kill();
                panic!("chromedriver did not start on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        // The flags the issue names: no sandbox (tests run as root), nothing fetched behind
        // the test's back, a new empty profile.
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
                "timeouts": { "pageLoad": PATIENCE.as_millis() as u64, "script": 10_000, "implicit": 0 },
            } } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let Some(session_id) = created["value"]["sessionId"].as_str() else {
            let _ = driver.kill();
            panic!("no browser session: {created}");
        };
        let browser = Browser {
            driver,
            port,
            http,
            session: format!("{base}/session/{session_id}"),
            session_id: session_id.to_owned(),
            _profile: profile,
        };
        // Headless windows are at least about 500 pixels wide: the viewport is set through
        // the DevTools protocol instead, as a phone (touch, mobile viewport rules) when narrow.
        browser
            .call(
                Method::POST,
                "/goog/cdp/execute",
                json!({ "cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600,
                } }),
            )
            .await;
        browser
    }

    async fn call(&self, method: Method, path: &str, body: Value) -> Value {
        let answer = self.try_call(method, path, body).await;
        assert!(answer["error"].is_null(), "{path}: {answer}");
        answer
    }

    /// A command's `value`, which holds `error` if it failed.
    async fn try_call(&self, method: Method, path: &str, body: Value) -> Value {
        let request = self.http.request(method, format!("{}{path}", self.session));
        let request = if body.is_null() {
            request
        } else {
            request.json(&body)
        };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        answer["value"].clone()
    }

    /// Loads `url` (the command returns once the page has loaded).
    pub async fn go(&self, url: &str) {
        self.call(Method::POST, "/url", json!({ "url": url })).await;
    }

    /// The element `css` selects, waiting for it to appear (a page loading after a click).
    pub async fn find(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let found = self
                .try_call(
                    Method::POST,
                    "/element",
                    json!({ "using": "css selector", "value": css }),
                )
                .await;
            let element = found.as_object().and_then(|object| {
                object
                    .iter()
                    .find(|(key, _)| key.starts_with(ELEMENT))
                    .and_then(|(_, id)| id.as_str())
            });
            if let Some(element) = element {
                return element.to_owned();
            }
            assert!(
                started.elapsed() < PATIENCE,
                "no element {css}: {found}\n{}",
                self.text().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into the field `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            Method::POST,
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Clicks what `css` selects.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(
            Method::POST,
            &format!("/element/{element}/click"),
            json!({}),
        )
        .await;
    }

    /// Sends keys to the focused element (`\u{E004}` is Tab, `\u{E007}` Enter).
    pub async fn keys(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|c| {
                let c = c.to_string();
                [
                    json!({ "type": "keyDown", "value": c }),
                    json!({ "type": "keyUp", "value": c }),
                ]
            })
            .collect();
        self.call(
            Method::POST,
            "/actions",
            json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        )
        .await;
    }

    /// Whether the control `css` selects is enabled.
    pub async fn enabled(&self, css: &str) -> bool {
        let element = self.find(css).await;
        self.call(
            Method::GET,
            &format!("/element/{element}/enabled"),
            Value::Null,
        )
        .await
        .as_bool()
        .unwrap()
    }

    /// Runs `script` in the page and returns its result.
    pub async fn script(&self, script: &str) -> Value {
        self.call(
            Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// The page's text as a reader sees it.
    pub async fn text(&self) -> String {
        self.script("return document.body ? document.body.innerText : ''")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's text once `wanted` holds of it (a page that loads after a click or a form).
    pub async fn text_until(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = self.text().await;
            if wanted(&text) {
                return text;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{what}; the page says:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves the page as `name.png` in `WHARF_TEST_SCREENSHOTS`, if set.
    pub async fn screenshot(&self, name: &str) {
        let Ok(dir) = std::env::var("WHARF_TEST_SCREENSHOTS") else {
            return;
        };
        let png = self.call(Method::GET, "/screenshot", Value::Null).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{name}.png")),
            bytes,
        )
        .unwrap();
    }
}

impl Drop for Browser {
    /// Ends the session first, which closes chromium (killing chromedriver alone would leave
    /// chromium running), even when the test panicked; then chromedriver.
    fn drop(&mut self) {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = stream.set_read_timeout(Some(PATIENCE));
            let request = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                self.session_id, self.port
            );
            if stream.write_all(request.as_bytes()).is_ok() {
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
