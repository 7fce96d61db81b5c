//! The HTTP side: routes, request checks, the shared state, first-start training.

use crate::net::{Net, SIDE};
use crate::training::{self, TrainStatus};
use crate::Args;
use convnet::io::{load_weights, save_weights};
use convnet::zoo::lenet5_modern;
use convnet::Layer;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tiny_http::{Header, Request, Response, Server};

/// The largest request body read: 784 numbers need about 16 KB of JSON at most.
pub const MAX_BODY: usize = 64 * 1024;
/// Requests handled at once; more get 503 rather than another thread.
const MAX_IN_FLIGHT: usize = 32;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// Where the model is.
pub enum Stage {
    /// Training on first start.
    Training(TrainStatus),
    /// Ready to answer.
    Ready(Box<Net>),
    /// Training or loading failed; the message says why.
    Failed(String),
}

/// The state every request handler shares.
pub struct App {
    stage: Mutex<Stage>,
    /// Zoo summaries already computed (building VGG-19 once is enough).
    zoo: Mutex<HashMap<String, Value>>,
    /// The address served, for the `Host` check.
    addr: SocketAddr,
    in_flight: AtomicUsize,
}

/// Locks a mutex even if a handler panicked while holding it (the data stays usable: every
/// update replaces whole values).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl App {
    /// A new state at `stage`, serving `addr`.
    pub fn new(stage: Stage, addr: SocketAddr) -> Self {
        App {
            stage: Mutex::new(stage),
            zoo: Mutex::new(HashMap::new()),
            addr,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Replaces the stage.
    pub fn set(&self, stage: Stage) {
        *lock(&self.stage) = stage;
    }

    /// The `/api/status` answer.
    pub fn status(&self) -> Value {
        match &*lock(&self.stage) {
            Stage::Training(s) => json!({
                "state": "training",
                "phase": s.phase,
                "step": s.step,
                "steps": s.steps,
                "loss": s.loss,
                "accuracy": s.accuracy,
                "seconds": s.seconds,
            }),
            Stage::Ready(net) => json!({
                "state": "ready",
                "source": net.source,
                "test_accuracy": net.test_accuracy,
            }),
            Stage::Failed(e) => json!({"state": "failed", "error": e}),
        }
    }
}

/// An answer: status, content type, body and headers of our own.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// `Allow`, for 405 answers.
    pub allow: Option<&'static str>,
}

impl Reply {
    fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
            allow: None,
        }
    }

    fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::json(status, &json!({ "error": message.into() }))
    }

    fn text(content_type: &'static str, body: &str) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: body.as_bytes().to_vec(),
            allow: None,
        }
    }

    fn wrong_method(allow: &'static str) -> Reply {
        Reply {
            allow: Some(allow),
            ..Reply::error(405, format!("method not allowed here; use {allow}"))
        }
    }
}

/// What [`handle`] needs of a request: method, URL, headers, and its body on demand.
pub trait Incoming {
    /// The method, `"GET"`.
    fn method(&self) -> String;
    /// The URL as sent, `/api/zoo/lenet5?x=1`.
    fn url(&self) -> &str;
    /// The `Host` header, if any.
    fn host(&self) -> Option<String>;
    /// The declared body length, if any.
    fn declared_length(&self) -> Option<usize>;
    /// A reader of the body.
    fn body(&mut self) -> &mut dyn Read;
}

impl Incoming for Request {
    fn method(&self) -> String {
        Request::method(self).as_str().to_string()
    }
    fn url(&self) -> &str {
        Request::url(self)
    }
    fn host(&self) -> Option<String> {
        self.headers()
            .iter()
            .find(|h| h.field.equiv("Host"))
            .map(|h| h.value.as_str().to_string())
    }
    fn declared_length(&self) -> Option<usize> {
        self.body_length()
    }
    fn body(&mut self) -> &mut dyn Read {
        self.as_reader()
    }
}

/// Whether `host` (a `Host` header) names the loopback address the server is on, as
/// `127.0.0.1:8000`, `localhost:8000` or `[::1]:8000`. A page from elsewhere whose name was
/// re-pointed at 127.0.0.1 (DNS rebinding) sends its own name and is turned away.
fn host_allowed(host: &str, addr: SocketAddr) -> bool {
    let port = addr.port().to_string();
    let Some((name, p)) = host.rsplit_once(':') else {
        return false;
    };
    p == port && matches!(name, "127.0.0.1" | "localhost" | "[::1]")
}

/// Answers one request.
pub fn handle(app: &App, request: &mut dyn Incoming) -> Reply {
    if app.addr.ip().is_loopback() {
        match request.host() {
            Some(h) if host_allowed(&h, app.addr) => {}
            _ => {
                return Reply::error(
                    421,
                    "the Host header must name this server (127.0.0.1, localhost or [::1] and its port)",
                )
            }
        }
    }
    let method = request.method();
    let url = request.url().to_string();
    let path = url.split(['?', '#']).next().unwrap_or("");
    let get = method == "GET" || method == "HEAD";
    match path {
        "/" | "/index.html" if get => Reply::text("text/html; charset=utf-8", INDEX_HTML),
        "/app.js" if get => Reply::text("text/javascript; charset=utf-8", APP_JS),
        "/style.css" if get => Reply::text("text/css; charset=utf-8", STYLE_CSS),
        "/api/status" if get => Reply::json(200, &app.status()),
        "/api/zoo" if get => Reply::json(200, &zoo_list()),
        "/" | "/index.html" | "/app.js" | "/style.css" | "/api/status" | "/api/zoo" => {
            Reply::wrong_method("GET")
        }
        "/api/predict" if method == "POST" => predict(app, request),
        "/api/predict" => Reply::wrong_method("POST"),
        _ => match path.strip_prefix("/api/zoo/") {
            Some(name) if get => zoo_model(app, name),
            Some(_) => Reply::wrong_method("GET"),
            None => Reply::error(404, format!("no such page: {path}")),
        },
    }
}

/// Reads at most [`MAX_BODY`] bytes of body; longer (declared or sent) is a 413.
fn read_body(request: &mut dyn Incoming) -> Result<Vec<u8>, Reply> {
    let too_big = || {
        Reply::error(
            413,
            format!("request body too large: at most {MAX_BODY} bytes"),
        )
    };
    if request.declared_length().is_some_and(|n| n > MAX_BODY) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    request
        .body()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| Reply::error(400, format!("could not read the request body: {e}")))?;
    if body.len() > MAX_BODY {
        return Err(too_big());
    }
    Ok(body)
}

/// The pixels of a predict request: `{"pixels": [784 numbers in [0, 1]]}`.
pub fn parse_pixels(body: &[u8]) -> Result<Vec<f32>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let n = SIDE * SIDE;
    let pixels = value
        .get("pixels")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("expected a JSON object {{\"pixels\": [{n} numbers]}}"))?;
    if pixels.len() != n {
        return Err(format!(
            "pixels: expected {n} numbers ({SIDE}x{SIDE}, row by row), got {}",
            pixels.len()
        ));
    }
    pixels
        .iter()
        .enumerate()
        .map(|(i, v)| match v.as_f64() {
            Some(x) if (0.0..=1.0).contains(&x) => Ok(x as f32),
            _ => Err(format!(
                "pixels[{i}]: expected a number from 0 to 1, got {v}"
            )),
        })
        .collect()
}

fn predict(app: &App, request: &mut dyn Incoming) -> Reply {
    let body = match read_body(request) {
        Ok(b) => b,
        Err(reply) => return reply,
    };
    let pixels = match parse_pixels(&body) {
        Ok(p) => p,
        Err(message) => return Reply::error(400, message),
    };
    let mut stage = lock(&app.stage);
    match &mut *stage {
        Stage::Ready(net) => match net.analyse(&pixels) {
            Ok(v) => Reply::json(200, &v),
            Err(e) => Reply::error(500, e.to_string()),
        },
        Stage::Training(_) => Reply::error(503, "the model is still training; try again soon"),
        Stage::Failed(e) => Reply::error(503, format!("no model: {e}")),
    }
}

fn zoo_list() -> Value {
    let models: Vec<Value> = convnet::zoo::MODELS
        .iter()
        .map(|m| json!({"name": m.name, "about": m.about, "input": m.input, "classes": m.classes}))
        .collect();
    json!({ "models": models })
}

/// The summary of one zoo model, built once and then kept.
fn zoo_model(app: &App, name: &str) -> Reply {
    let info = match convnet::zoo::info(name) {
        Ok(i) => i,
        Err(e) => return Reply::error(404, e.to_string()),
    };
    // One model at a time: two requests for VGG-19 build it once.
    let mut cache = lock(&app.zoo);
    if let Some(v) = cache.get(info.name) {
        return Reply::json(200, v);
    }
    let summary = convnet::zoo::build_default::<f32>(info.name).and_then(|model| {
        let [c, h, w] = info.input;
        model.summary(&[1, c, h, w])
    });
    match summary {
        Ok(s) => {
            let total = s.total_params();
            let value = json!({
                "name": info.name,
                "about": info.about,
                "input": info.input,
                "classes": info.classes,
                "summary": s.to_string(),
                "total_params": total,
                "total_params_text": convnet::summary::thousands(total),
            });
            cache.insert(info.name.to_string(), value.clone());
            Reply::json(200, &value)
        }
        Err(e) => Reply::error(500, e.to_string()),
    }
}

/// A running server: its address, its state, and the listener.
#[derive(Clone)]
pub struct Running {
    /// The address it listens on (with the real port when asked for port 0).
    pub addr: SocketAddr,
    /// The shared state.
    pub app: Arc<App>,
    server: Arc<Server>,
}

impl Running {
    /// Serves until [`Running::stop`]: each request on its own thread, at most
    /// `MAX_IN_FLIGHT` at once.
    pub fn wait(&self) {
        while let Ok(request) = self.server.recv() {
            let app = Arc::clone(&self.app);
            if app.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_IN_FLIGHT {
                app.in_flight.fetch_sub(1, Ordering::SeqCst);
                respond(request, Reply::error(503, "too many requests at once"));
                continue;
            }
            let spawned = std::thread::Builder::new()
                .name("playground-request".into())
                .spawn(move || {
                    let mut request = request;
                    let reply = handle(&app, &mut request);
                    respond(request, reply);
                    app.in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            if let Err(e) = spawned {
                eprintln!("playground: could not start a request thread: {e}");
                self.app.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Makes [`Running::wait`] return.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn stop(&self) {
        self.server.unblock();
    }
}

fn respond(request: Request, reply: Reply) {
    let mut response = Response::from_data(reply.body).with_status_code(reply.status);
    let mut headers = vec![
        ("Content-Type", reply.content_type),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
    ];
    if let Some(allow) = reply.allow {
        headers.push(("Allow", allow));
    }
    for (field, value) in headers {
        if let Ok(h) = Header::from_bytes(field.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    // A client that went away is not our problem.
    let _ = request.respond(response);
}

/// Binds the listener, loads the weights or starts training them in the background, and
/// returns at once; [`Running::wait`] then serves.
pub fn start(args: &Args) -> Result<Running, Box<dyn std::error::Error>> {
    let stage = if args.weights.is_file() {
        let mut model = lenet5_modern::<f32>(10)?;
        load_weights(&mut model, &args.weights)?;
        println!("loaded LeNet-5 weights from {}", args.weights.display());
        Stage::Ready(Box::new(Net::new(
            model,
            args.weights.display().to_string(),
            None,
        )?))
    } else {
        Stage::Training(TrainStatus {
            phase: "starting".into(),
            steps: args.steps,
            ..TrainStatus::default()
        })
    };
    let training = matches!(stage, Stage::Training(_));
    let running = bind(args.addr, stage)?;
    if training {
        println!(
            "no weights at {}: training LeNet-5 on {} for {} steps first (open the page to watch)",
            args.weights.display(),
            args.data.display(),
            args.steps
        );
        let (app, data, weights, steps) = (
            Arc::clone(&running.app),
            args.data.clone(),
            args.weights.clone(),
            args.steps,
        );
        std::thread::Builder::new()
            .name("playground-training".into())
            .spawn(move || {
                let stage = match train_and_save(&app, &data, &weights, steps) {
                    Ok(net) => Stage::Ready(Box::new(net)),
                    Err(e) => {
                        eprintln!("error: training failed: {e}");
                        Stage::Failed(e.to_string())
                    }
                };
                app.set(stage);
            })?;
    }
    Ok(running)
}

/// Listens on `addr` (port 0: any free port) with the model at `stage`.
pub fn bind(addr: SocketAddr, stage: Stage) -> Result<Running, Box<dyn std::error::Error>> {
    let server = Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or("the listener has no IP address")?;
    Ok(Running {
        addr,
        app: Arc::new(App::new(stage, addr)),
        server: Arc::new(server),
    })
}

fn train_and_save(
    app: &App,
    data: &std::path::Path,
    weights: &std::path::Path,
    steps: usize,
) -> Result<Net, Box<dyn std::error::Error>> {
    let trained = training::train(data, steps, 1, &mut |s| app.set(Stage::Training(s.clone())))?;
    if let Some(dir) = weights.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // save_weights writes a temporary file and renames it: never a half-written file.
    save_weights(&trained.model, weights)?;
    println!(
        "trained LeNet-5: {:.2}% on the 10,000 MNIST test images; saved {}",
        100.0 * trained.test_accuracy,
        weights.display()
    );
    Ok(Net::new(
        trained.model,
        format!("trained just now, saved to {}", weights.display()),
        Some(trained.test_accuracy),
    )?)
}
