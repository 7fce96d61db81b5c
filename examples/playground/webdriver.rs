//! Test helpers: a bare HTTP/1.1 client, and a WebDriver session on headless Chromium
//! (W3C WebDriver: JSON over HTTP to `chromedriver`).

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An HTTP answer: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `head` (request line and headers, without the blank line) and `body` as they are, then
/// reads the whole answer (the request says `Connection: close`). Write errors are ignored (a
/// server may answer and close before reading a body it refuses); a server that does not answer
/// within 30 s is an error.
pub fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Result<Answer, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let _ = stream
        .write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .and_then(|()| stream.write_all(body));
    // Read until the answer is complete (some servers keep the connection open regardless);
    // a reset after the answer arrived still leaves the answer in `bytes`.
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(answer) = complete_answer(&bytes) {
            return answer;
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if bytes.is_empty() => return Err(format!("no answer from {addr}: {e}")),
            Err(_) => break,
        }
    }
    if bytes.is_empty() {
        return Err(format!("no answer from {addr}: connection closed"));
    }
    parse_answer(&bytes)
}

/// The answer in `bytes` if it is all there: headers, and a body as long as declared (or
/// chunked to its end).
fn complete_answer(bytes: &[u8]) -> Option<Result<Answer, String>> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let answer = parse_answer(bytes).ok()?;
    let body = &bytes[end + 4..];
    let done = match answer
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(n) => body.len() >= n,
        None => answer.header("transfer-encoding") == Some("chunked") && dechunk(body).is_ok(),
    };
    done.then_some(Ok(answer))
}

/// A request with a body of known length.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<Answer, String> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}");
    if let Some(b) = body {
        head.push_str(&format!(
            "\r\nContent-Type: application/json\r\nContent-Length: {}",
            b.len()
        ));
    }
    raw(addr, &head, body.unwrap_or_default())
}

fn parse_answer(bytes: &[u8]) -> Result<Answer, String> {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("answer without a blank line after the headers")?;
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = bytes[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(n) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(n);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&bytes[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = bytes.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        bytes = bytes.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

/// The first of `names` found as an executable file on `PATH`.
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// A free loopback port (bound then released: another process could take it meanwhile, which
/// would make chromedriver fail to start, an error the test reports).
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// A chromedriver process and one browser session in it; both end on drop.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    /// Starts `chromedriver` and a headless Chromium session with a `width` x `height` window.
    pub fn start(
        chromedriver: &PathBuf,
        chromium: &PathBuf,
        width: u32,
        height: u32,
    ) -> Result<Browser, String> {
        let port = free_port()?;
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", chromedriver.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
        };
        let start = Instant::now();
        loop {
            let ready = request(addr, "GET", "/status", None)
                .ok()
                .is_some_and(|a| a.json()["value"]["ready"] == json!(true));
            if ready {
                break;
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err("chromedriver did not become ready within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--no-first-run",
                         format!("--window-size={width},{height}")]
            }
        }}});
        let value = browser.call("POST", "/session", Some(caps))?;
        browser.session = value["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {value}"))?
            .to_string();
        Ok(browser)
    }

    /// One WebDriver command; returns its `value`, or the driver's error message.
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string().into_bytes());
        let answer = request(self.addr, method, path, body.as_deref())?;
        let json = answer.json();
        if answer.status != 200 {
            return Err(format!(
                "WebDriver {method} {path}: {} {}",
                answer.status, json["value"]["message"]
            ));
        }
        Ok(json["value"].clone())
    }

    /// A command of this session: `path` is relative to `/session/{id}`.
    pub fn session(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens a URL.
    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.session("POST", "/url", Some(json!({ "url": url })))
            .map(|_| ())
    }

    /// Runs JavaScript in the page (a function body; `arguments` holds `args`) and returns its
    /// result.
    pub fn script(&self, body: &str, args: Value) -> Result<Value, String> {
        self.session(
            "POST",
            "/execute/sync",
            Some(json!({"script": body, "args": args})),
        )
    }

    /// Polls `body` until it returns something truthy, for at most `timeout`.
    pub fn wait_for(&self, body: &str, timeout: Duration) -> Result<Value, String> {
        let start = Instant::now();
        loop {
            let v = self.script(body, json!([]))?;
            let truthy =
                !matches!(v, Value::Null | Value::Bool(false)) && v != json!(0) && v != json!("");
            if truthy {
                return Ok(v);
            }
            if start.elapsed() > timeout {
                return Err(format!("timed out after {timeout:?} waiting for: {body}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The WebDriver reference of the first element matching a CSS selector.
    pub fn element(&self, css: &str) -> Result<Value, String> {
        let v = self.session(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        )?;
        Ok(v)
    }

    /// Performs W3C input actions (`{"actions": [...]}`) and releases them.
    pub fn actions(&self, actions: Value) -> Result<(), String> {
        self.session("POST", "/actions", Some(actions))?;
        self.session("DELETE", "/actions", None).map(|_| ())
    }

    /// A PNG screenshot of the window.
    pub fn screenshot(&self) -> Result<Vec<u8>, String> {
        let v = self.session("GET", "/screenshot", None)?;
        base64_decode(v.as_str().ok_or("screenshot is not a string")?)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64 (RFC 4648, with padding; whitespace skipped).
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let value = |c: u8| -> Result<u32, String> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("not a base64 character: {:?}", c as char)),
        } as u32)
    };
    let symbols: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let data = symbols
        .iter()
        .position(|&c| c == b'=')
        .map_or(&symbols[..], |i| &symbols[..i]);
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for group in data.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in group.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        match group.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return Err("base64 text of impossible length".into()),
        }
    }
    Ok(out)
}
