//! The playground's tests: geometry, request checks over real sockets, and the page itself in
//! headless Chromium (skipped, with a message, where chromium or chromedriver is missing).

use crate::net::{check_geometry, formula, Net, SIDE, STAGES};
use crate::server::{bind, parse_pixels, start, Running, Stage, MAX_BODY};
use crate::webdriver::{base64_decode, find_program, raw, request, Browser};
use crate::{parse_from, Args};
use convnet::data::Mnist;
use convnet::zoo::lenet5_modern;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Training steps for the browser test's first start: enough for a LeNet-5 that reads clear
/// digits (about 95% on the test set), few enough for a debug build.
const TEST_STEPS: usize = 300;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Serves on a free loopback port in the background.
fn serve(running: Running) -> Running {
    let background = running.clone();
    std::thread::spawn(move || background.wait());
    running
}

/// A server whose LeNet-5 has random weights: enough for checking requests.
fn untrained_server() -> Running {
    convnet::init::manual_seed(3);
    let model = lenet5_modern::<f32>(10).unwrap();
    let net = Net::new(model, "random weights".into(), None).unwrap();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    serve(bind(addr, Stage::Ready(Box::new(net))).unwrap())
}

fn pixels_body(pixels: &[f32]) -> Vec<u8> {
    json!({ "pixels": pixels }).to_string().into_bytes()
}

#[test]
fn the_geometry_table_matches_the_model() {
    let model = lenet5_modern::<f32>(10).unwrap();
    check_geometry(&model).unwrap();
    // The course's worked numbers for LeNet-5 on 28x28 with a padded C1.
    let sides: Vec<usize> = STAGES
        .iter()
        .scan(SIDE, |n, s| {
            let (_, o) = formula(*n, s);
            *n = o;
            Some(o)
        })
        .collect();
    assert_eq!(sides, [28, 14, 10, 5, 1]);
    assert_eq!(formula(28, &STAGES[0]).0, "O = (28 - 5 + 2·2)/1 + 1 = 28");
    assert_eq!(formula(10, &STAGES[3]).0, "O = (10 - 2 + 2·0)/2 + 1 = 5");
    // A table that disagrees with the model is caught: the classic LeNet-5 has no C1 padding.
    let classic = convnet::zoo::lenet5::<f32>(10).unwrap();
    let err = check_geometry(&classic).unwrap_err();
    assert!(err.contains("CONV1"), "{err}");
}

#[test]
fn flags_default_to_loopback_and_reject_nonsense() {
    let args = parse_from(Vec::<String>::new()).unwrap();
    assert!(args.addr.ip().is_loopback());
    assert_eq!(args.addr.port(), 8000);
    assert_eq!(args.weights, PathBuf::from(crate::DEFAULT_WEIGHTS));
    assert_eq!(args.steps, 2 * 938);
    let args = parse_from(["--port", "0", "--steps", "5", "--weights", "w.st"]).unwrap();
    assert_eq!((args.addr.port(), args.steps), (0, 5));
    assert_eq!(args.weights, PathBuf::from("w.st"));
    for bad in [
        &["--port", "70000"][..],
        &["--port", "x"],
        &["--host", "example.com"],
        &["--steps", "0"],
        &["--bogus"],
        &["--port"],
    ] {
        assert!(parse_from(bad.iter().copied()).is_err(), "{bad:?}");
    }
}

#[test]
fn pixel_bodies_are_checked() {
    let ok = pixels_body(&vec![0.5; SIDE * SIDE]);
    assert_eq!(parse_pixels(&ok).unwrap().len(), 784);
    let cases: [(&[u8], &str); 7] = [
        (b"{\"pixels\": [1, 2", "not valid JSON"),
        (b"not json at all", "not valid JSON"),
        (b"[0.5, 0.5]", "expected a JSON object"),
        (b"{\"pixels\": \"abc\"}", "expected a JSON object"),
        (b"{\"pixels\": []}", "got 0"),
        (b"{\"pixels\": [0.5, null]}", "expected 784"),
        (&[0xff, 0xfe, 0x00], "not valid JSON"),
    ];
    for (body, message) in cases {
        let err = parse_pixels(body).unwrap_err();
        assert!(err.contains(message), "{err}");
    }
    let mut values = vec![json!(0.5); SIDE * SIDE];
    for bad in [
        json!(1.5),
        json!(-0.1),
        json!("0.5"),
        json!(null),
        json!([0.5]),
    ] {
        values[300] = bad.clone();
        let err = parse_pixels(json!({ "pixels": values }).to_string().as_bytes()).unwrap_err();
        assert!(err.contains("pixels[300]"), "{bad}: {err}");
    }
    // Deep nesting is refused by the parser's depth limit, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(parse_pixels(deep.as_bytes()).is_err());
}

#[test]
fn the_server_answers_bad_requests_with_4xx() {
    let server = untrained_server();
    let addr = server.addr;
    assert!(addr.ip().is_loopback());
    let pixels = vec![0.0f32; SIDE * SIDE];

    // What works, first: the page, the status, a prediction, a zoo summary.
    let page = request(addr, "GET", "/", None).unwrap();
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&page.body).contains("<canvas id=\"pad\""));
    for asset in ["/app.js", "/style.css"] {
        assert_eq!(request(addr, "GET", asset, None).unwrap().status, 200);
    }
    let status = request(addr, "GET", "/api/status", None).unwrap().json();
    assert_eq!(status["state"], "ready");
    let answer = request(addr, "POST", "/api/predict", Some(&pixels_body(&pixels))).unwrap();
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    let v = answer.json();
    let p: Vec<f64> = v["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(p.len(), 10);
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    let top = v["prediction"].as_u64().unwrap() as usize;
    assert!(p.iter().all(|&q| q <= p[top]));
    let shapes: Vec<Value> = v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["shape"].clone())
        .collect();
    assert_eq!(
        shapes,
        [
            json!([6, 28, 28]),
            json!([6, 14, 14]),
            json!([16, 10, 10]),
            json!([16, 5, 5]),
            json!([120, 1, 1])
        ]
    );
    for layer in v["layers"].as_array().unwrap() {
        let [c, h, w] = [0, 1, 2].map(|i| layer["shape"][i].as_u64().unwrap() as usize);
        assert_eq!(layer["maps"].as_array().unwrap().len(), c * h * w);
    }
    assert_eq!(v["saliency"].as_array().unwrap().len(), SIDE * SIDE);
    let zoo = request(addr, "GET", "/api/zoo/lenet5", None).unwrap();
    assert_eq!(zoo.status, 200);
    // LeNet-5's parameter count as the paper's layer sizes give it:
    // C1 6*(25+1) + C3 16*(6*25+1) + C5 120*(16*25+1) + F6 84*(120+1) + out 10*(84+1).
    let expected = 6 * 26 + 16 * 151 + 120 * 401 + 84 * 121 + 10 * 85;
    assert_eq!(zoo.json()["total_params"], json!(expected));
    assert!(zoo.json()["summary"]
        .as_str()
        .unwrap()
        .ends_with("Total params: 61,706"));
    let list = request(addr, "GET", "/api/zoo", None).unwrap().json();
    assert_eq!(
        list["models"].as_array().unwrap().len(),
        convnet::zoo::MODELS.len()
    );

    // Then what must not work.
    let expect = |answer: crate::webdriver::Answer, status: u16, says: &str| {
        assert_eq!(
            answer.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&answer.body)
        );
        let message = answer.json()["error"].as_str().unwrap_or("").to_string();
        assert!(message.contains(says), "{message:?} lacks {says:?}");
    };
    let post = |body: &[u8]| request(addr, "POST", "/api/predict", Some(body)).unwrap();
    expect(post(b"{\"pixels\": [0.1, "), 400, "not valid JSON");
    expect(post(b"\x00\x01garbage"), 400, "not valid JSON");
    expect(post(&pixels_body(&pixels[..783])), 400, "got 783");
    expect(post(&pixels_body(&[0.0; 785])), 400, "got 785");
    expect(post(&pixels_body(&[0.0; 28])), 400, "got 28");
    expect(post(b"{\"pixels\": 7}"), 400, "expected a JSON object");
    let mut too_bright = pixels.clone();
    too_bright[5] = 2.0;
    expect(post(&pixels_body(&too_bright)), 400, "pixels[5]");
    expect(post(b""), 400, "not valid JSON");
    // A body over the cap, sent in full.
    let huge = vec![b' '; MAX_BODY + 1];
    expect(post(&huge), 413, "too large");
    // A huge declared length, with only a little sent: answered at once, not waited for.
    let head = format!("POST /api/predict HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1000000000");
    expect(
        raw(addr, &head, b"{\"pixels\": [").unwrap(),
        413,
        "too large",
    );
    // A chunked body (no declared length) that goes over the cap.
    let head = format!("POST /api/predict HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked");
    let chunk = vec![b' '; 16 * 1024];
    let mut body = Vec::new();
    for _ in 0..5 {
        body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        body.extend_from_slice(&chunk);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    expect(raw(addr, &head, &body).unwrap(), 413, "too large");
    // Wrong methods: 405 with the allowed one named.
    let get_predict = request(addr, "GET", "/api/predict", None).unwrap();
    assert_eq!(get_predict.header("allow"), Some("POST"));
    expect(get_predict, 405, "use POST");
    expect(
        request(addr, "POST", "/api/status", Some(b"{}")).unwrap(),
        405,
        "use GET",
    );
    expect(
        request(addr, "DELETE", "/api/zoo/lenet5", None).unwrap(),
        405,
        "use GET",
    );
    expect(
        request(addr, "PUT", "/", Some(b"x")).unwrap(),
        405,
        "use GET",
    );
    // Unknown things: 404.
    expect(
        request(addr, "GET", "/api/zoo/lenet6", None).unwrap(),
        404,
        "unknown model `lenet6`",
    );
    expect(
        request(addr, "GET", "/api/zoo/", None).unwrap(),
        404,
        "unknown model",
    );
    expect(
        request(addr, "GET", "/etc/passwd", None).unwrap(),
        404,
        "no such page",
    );
    // A Host that is not this loopback server (DNS rebinding): refused.
    let head = "GET /api/status HTTP/1.1\r\nHost: evil.example:80";
    expect(raw(addr, head, b"").unwrap(), 421, "Host header");
    let head = "GET /api/status HTTP/1.1";
    assert_eq!(raw(addr, head, b"").unwrap().status, 421);
    // A garbled request line gets a 4xx from the HTTP layer.
    let answer = raw(addr, "NOT HTTP AT ALL", b"").unwrap();
    assert!((400..500).contains(&answer.status), "{}", answer.status);

    // And the server still answers, correctly, after all that.
    let answer = request(addr, "POST", "/api/predict", Some(&pixels_body(&pixels))).unwrap();
    assert_eq!(answer.status, 200);
    server.stop();
}

#[test]
fn predict_waits_for_training() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = serve(bind(addr, Stage::Training(Default::default())).unwrap());
    let body = pixels_body(&[0.0; SIDE * SIDE]);
    let answer = request(server.addr, "POST", "/api/predict", Some(&body)).unwrap();
    assert_eq!(answer.status, 503);
    assert_eq!(
        request(server.addr, "GET", "/api/status", None)
            .unwrap()
            .json()["state"],
        "training"
    );
    // Bad bodies are still bad while training.
    let answer = request(server.addr, "POST", "/api/predict", Some(b"{")).unwrap();
    assert_eq!(answer.status, 400);
    server.stop();
}

#[test]
fn base64_decodes_the_rfc_vectors() {
    for (text, plain) in [
        ("", ""),
        ("Zg==", "f"),
        ("Zm8=", "fo"),
        ("Zm9v", "foo"),
        ("Zm9vYg==", "foob"),
        ("Zm9vYmE=", "fooba"),
        ("Zm9vYmFy", "foobar"),
    ] {
        assert_eq!(base64_decode(text).unwrap(), plain.as_bytes());
    }
    assert!(base64_decode("Zm9v!").is_err());
}

/// Horizontal strokes, one per run of ink in each row of a 28x28 digit, in the pad's
/// coordinates (280x280, 10 pad pixels per digit pixel), as WebDriver pointer actions relative
/// to the pad's centre.
fn strokes(digit: &[u8], pad: Value) -> Vec<Value> {
    let mut actions = Vec::new();
    let at = |x: usize, y: usize| {
        json!({"type": "pointerMove", "duration": 0, "origin": pad.clone(),
               "x": x as i64 - 140, "y": y as i64 - 140})
    };
    for (r, row) in digit.chunks(SIDE).enumerate() {
        let mut c = 0;
        while c < SIDE {
            if row[c] < 128 {
                c += 1;
                continue;
            }
            let start = c;
            while c < SIDE && row[c] >= 128 {
                c += 1;
            }
            let y = r * 10 + 5;
            actions.push(at(start * 10 + 5, y));
            actions.push(json!({"type": "pointerDown", "button": 0}));
            for x in start..c {
                actions.push(at(x * 10 + 5, y));
            }
            actions.push(json!({"type": "pointerUp", "button": 0}));
        }
    }
    actions
}

#[test]
fn the_page_reads_a_drawn_mnist_digit_in_headless_chromium() {
    let (Some(driver), Some(chromium)) = (
        find_program(&["chromedriver"]),
        find_program(&["chromium", "chromium-browser"]),
    ) else {
        eprintln!(
            "SKIPPED the_page_reads_a_drawn_mnist_digit_in_headless_chromium: chromium and \
             chromedriver are not both on PATH (Debian: apt-get install chromium chromium-driver)"
        );
        return;
    };
    let data = manifest().join("data/mnist");
    let mnist = match Mnist::load(&data) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("SKIPPED the browser test: no MNIST ({e})");
            return;
        }
    };
    // A first start: no weights yet, so the server trains (briefly) and saves them.
    let dir = std::env::temp_dir().join(format!("convnet-playground-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let weights = dir.join("lenet5.safetensors");
    let args = Args {
        addr: "127.0.0.1:0".parse().unwrap(),
        weights: weights.clone(),
        data,
        steps: TEST_STEPS,
    };
    let server = serve(start(&args).unwrap());
    let url = format!("http://{}/", server.addr);

    let browser = Browser::start(&driver, &chromium, 1200, 1400).unwrap();
    browser.goto(&url).unwrap();
    // Training progress shows on the page until the model is ready.
    let mut seen_progress = false;
    let start = std::time::Instant::now();
    loop {
        let v = browser
            .script(
                "return [document.body.dataset.ready === 'true', \
                 document.getElementById('status').textContent]",
                json!([]),
            )
            .unwrap();
        seen_progress |= v[1].as_str().unwrap_or("").contains("Training LeNet-5");
        if v[0] == json!(true) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the model was not ready after 300 s: {}",
            v[1]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(seen_progress, "the page never showed training progress");
    assert!(weights.is_file(), "the trained weights were not saved");
    let status = request(server.addr, "GET", "/api/status", None)
        .unwrap()
        .json();
    eprintln!("browser test: {status}");

    let pad = browser.element("#pad").unwrap();
    let clear = browser.element("#clear").unwrap();
    let clear_id = clear.as_object().unwrap().values().next().unwrap().clone();
    let clear_id = clear_id.as_str().unwrap();
    // The first three MNIST test digits (7, 2, 1), drawn stroke by stroke.
    for index in 0..3 {
        let label = mnist.test.labels()[index];
        browser
            .session(
                "POST",
                &format!("/element/{clear_id}/click"),
                Some(json!({})),
            )
            .unwrap();
        browser
            .wait_for(
                "return document.getElementById('prediction').dataset.state === 'empty'",
                Duration::from_secs(10),
            )
            .unwrap();
        let actions = strokes(mnist.test.pixels(index), pad.clone());
        browser
            .actions(json!({"actions": [{
                "type": "pointer", "id": "pen", "parameters": {"pointerType": "mouse"},
                "actions": actions
            }]}))
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let shown = browser
            .wait_for(
                "const p = document.getElementById('prediction'); \
                 return p.dataset.state === 'done' && !busy && !again ? p.textContent : null",
                Duration::from_secs(30),
            )
            .unwrap();
        assert_eq!(
            shown,
            json!(label.to_string()),
            "MNIST test digit {index} (a {label}) was read as {shown}"
        );
    }

    // Every conv and pool layer's maps are drawn, and not blank.
    let layers = browser
        .script(
            "return [...document.querySelectorAll('#layers .layer')].map(l => {
               const maps = [...l.querySelectorAll('canvas.fmap')];
               const lit = maps.filter(c => {
                 const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                 for (let i = 0; i < d.length; i += 4) if (d[i] > 0) return true;
                 return false;
               }).length;
               return [maps.length, lit, l.querySelector('.formula').textContent];
             })",
            json!([]),
        )
        .unwrap();
    let layers = layers.as_array().unwrap();
    assert_eq!(layers.len(), 5, "{layers:?}");
    for (layer, (count, side)) in layers
        .iter()
        .zip([(6, 28), (6, 14), (16, 10), (16, 5), (1, 1)])
    {
        assert_eq!(layer[0], json!(count), "{layer}");
        assert!(layer[1].as_u64().unwrap() >= 1, "all maps blank: {layer}");
        let formula = layer[2].as_str().unwrap();
        assert!(formula.ends_with(&format!("= {side}")), "{formula}");
    }
    let saliency_lit = browser
        .script(
            "const c = document.getElementById('saliency');
             const d = c.getContext('2d').getImageData(0, 0, 28, 28).data;
             let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 0) n++;
             return n;",
            json!([]),
        )
        .unwrap();
    assert!(saliency_lit.as_u64().unwrap() > 100, "{saliency_lit}");

    let png = browser.screenshot().unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // Into the build's target directory (CARGO_TARGET_DIR when set, as cargo itself does).
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| manifest().join("target"));
    std::fs::create_dir_all(&target).unwrap();
    let shot = target.join("playground-screenshot.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!("browser test: screenshot written to {}", shot.display());

    // The zoo tab: LeNet-5's summary and parameter count.
    let tab = browser.element("#tab-zoo").unwrap();
    let tab_id = tab.as_object().unwrap().values().next().unwrap().clone();
    browser
        .session(
            "POST",
            &format!("/element/{}/click", tab_id.as_str().unwrap()),
            Some(json!({})),
        )
        .unwrap();
    let params = browser
        .wait_for(
            "const t = document.getElementById('params').textContent; return t === '–' ? null : t",
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(params, json!("61,706"));
    let summary = browser
        .script(
            "return document.getElementById('summary').textContent",
            json!([]),
        )
        .unwrap();
    assert!(summary
        .as_str()
        .unwrap()
        .contains("[28x28x6]  CONV1: 6 5x5 filters at stride 1, pad 2"));

    drop(browser);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
