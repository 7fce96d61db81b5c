//! A stable-Rust mutation fuzzer for the three file readers: safetensors weights, training
//! checkpoints and IDX (raw and gzip). It starts from valid files, mutates them (bit flips,
//! byte overwrites, truncation, splices of two files, huge length fields, duplicated and
//! deleted ranges) and feeds each mutant to the reader. A reader may return any error; a
//! panic is a crash.
//!
//! Not part of the default test run (the fuzz tests are `#[ignore]`d). Run them with
//!
//! ```text
//! FUZZ_SECONDS=300 cargo test --release --test fuzz_readers -- --ignored --nocapture
//! ```
//!
//! Each prints its executions and crashes; crashing inputs are written to
//! `target/fuzz-crashes/<reader>/`. Every crash found becomes a regression test here
//! (`regression_*`, run by default); the runs so far (docs/ERRORS.md) found none.

use convnet::data::{decode_idx, encode_idx, IdxArray};
use convnet::io::{decode_tensors, encode_tensors, load_weights_from_bytes, state_dict};
use convnet::optim::{Adam, AdamConfig};
use convnet::prelude::*;
use convnet::progress::ProgressStyle;
use convnet::train::Trainer;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

/// A small generator (splitmix64), so the fuzzer needs no dependency and runs are repeatable.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Length fields a reader might trust: zero, one, around the limits, huge.
const INTERESTING: [u64; 10] = [
    0,
    1,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    u64::MAX / 2,
    u64::MAX,
];

/// One random mutation of `data`, with `others` available for splicing.
fn mutate(g: &mut Gen, data: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..1 + g.below(4) {
        let len = d.len();
        match g.below(8) {
            0 if len > 0 => {
                let i = g.below(len);
                d[i] ^= 1 << g.below(8);
            }
            1 if len > 0 => {
                let i = g.below(len);
                d[i] = g.next() as u8;
            }
            2 => d.truncate(g.below(len + 1)),
            3 if !others.is_empty() => {
                let o = &others[g.below(others.len())];
                let (a, b) = (g.below(len + 1), g.below(o.len() + 1));
                d.truncate(a);
                d.extend_from_slice(&o[b..]);
            }
            4 if len > 0 => {
                // A huge or boundary length field, little- or big-endian, 4 or 8 bytes wide.
                let v = INTERESTING[g.below(INTERESTING.len())];
                let wide = g.below(2) == 0;
                let bytes: Vec<u8> = match (wide, g.below(2) == 0) {
                    (true, true) => v.to_le_bytes().to_vec(),
                    (true, false) => v.to_be_bytes().to_vec(),
                    (false, true) => (v as u32).to_le_bytes().to_vec(),
                    (false, false) => (v as u32).to_be_bytes().to_vec(),
                };
                // Length fields sit near the start: bias the position there half the time.
                let i = if g.below(2) == 0 {
                    g.below(len.min(24))
                } else {
                    g.below(len)
                };
                for (k, b) in bytes.into_iter().enumerate() {
                    if let Some(x) = d.get_mut(i + k) {
                        *x = b;
                    }
                }
            }
            5 if len > 0 => {
                let (a, n) = (g.below(len), 1 + g.below(64));
                let chunk: Vec<u8> = d[a..(a + n).min(len)].to_vec();
                let at = g.below(len + 1);
                d.splice(at..at, chunk);
            }
            6 if len > 0 => {
                let (a, n) = (g.below(len), 1 + g.below(64));
                d.drain(a..(a + n).min(len));
            }
            _ => {
                // Text tweaks inside a JSON header: digits and quotes matter most.
                if let Some(i) = (0..8).map(|_| g.below(len.max(1))).find(|&i| {
                    d.get(i)
                        .is_some_and(|c| c.is_ascii_digit() || *c == b'"' || *c == b',')
                }) {
                    d[i] = b"0123456789\",[]{}-"[g.below(17)];
                }
            }
        }
    }
    d
}

fn crash_dir(reader: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/fuzz-crashes")
        .join(reader);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Mutates the corpus for `seconds` (from `FUZZ_SECONDS`, default 10) and reports.
fn fuzz(reader: &str, corpus: Vec<Vec<u8>>, target: &dyn Fn(&[u8])) {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    // Panics are expected to be caught here; keep the output readable.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut g = Gen(seed);
    let started = std::time::Instant::now();
    let (mut execs, mut crashes) = (0u64, 0u64);
    // Mutants that were accepted (Ok) join the corpus, so the search goes deeper.
    let mut pool = corpus;
    while started.elapsed().as_secs() < seconds {
        let base = pool[g.below(pool.len())].clone();
        let input = mutate(&mut g, &base, &pool);
        execs += 1;
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            crashes += 1;
            let path = crash_dir(reader).join(format!("crash-{seed}-{execs}.bin"));
            std::fs::write(&path, &input).unwrap();
        }
        if pool.len() < 64 && g.below(100) == 0 {
            pool.push(input);
        }
    }
    std::panic::set_hook(hook);
    eprintln!(
        "fuzz {reader}: {execs} executions in {:.0} s, {crashes} crashes",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        crashes,
        0,
        "crashing inputs in {}",
        crash_dir(reader).display()
    );
}

fn model() -> Sequential<f32> {
    Sequential::new()
        .add(Conv2d::new(Conv2dConfig::new(1, 2, 3).seed(1)).unwrap())
        .add(BatchNorm2d::new(BatchNorm2dConfig::new(2)).unwrap())
        .add(Dropout::new(DropoutConfig::new().p(0.5).seed(2)).unwrap())
        .add(Flatten::new(FlattenConfig::new()).unwrap())
        .add(Linear::new(LinearConfig::new(2, 3).seed(3)).unwrap())
}

fn weights_corpus() -> Vec<Vec<u8>> {
    let m = model();
    let f32s = encode_tensors(&state_dict(&m), None).unwrap();
    let f64s: Vec<(String, Tensor<f64>)> = state_dict(&m)
        .into_iter()
        .map(|(n, t)| (n, t.mapv(|v| v as f64)))
        .collect();
    vec![f32s, encode_tensors(&f64s, None).unwrap()]
}

fn weights_target(bytes: &[u8]) {
    let _ = decode_tensors::<f32>(bytes, "fuzz");
    let _ = decode_tensors::<f64>(bytes, "fuzz");
    let mut m = model();
    let _ = load_weights_from_bytes(&mut m, bytes, "fuzz");
}

fn trainer() -> Trainer<f32, Sequential<f32>> {
    Trainer::new(model(), Adam::new(AdamConfig::new(0.01)).unwrap())
        .with_progress(ProgressStyle::Off)
}

fn checkpoint_corpus() -> Vec<Vec<u8>> {
    let dir = std::env::temp_dir().join(format!("convnet-fuzz-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.safetensors");
    let mut t = trainer();
    // A step, so the optimizer state is not empty.
    let x = Tensor::<f32>::from_elem(ndarray::IxDyn(&[2, 1, 3, 3]), 0.5);
    let logits = t.model.forward(&x).unwrap();
    let (_, g) = CrossEntropyLoss::new().forward(&logits, &[0, 2]).unwrap();
    t.model.backward(&g).unwrap();
    let mut opt = Adam::new(AdamConfig::new(0.01)).unwrap();
    opt.step(&mut t.model).unwrap();
    let mut t2 = Trainer::new(t.model, opt).with_progress(ProgressStyle::Off);
    t2.save_checkpoint(&path).unwrap();
    let a = std::fs::read(&path).unwrap();
    trainer().save_checkpoint(&path).unwrap();
    let b = std::fs::read(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    vec![a, b]
}

fn checkpoint_target(bytes: &[u8]) {
    let mut t = trainer();
    if t.load_checkpoint_from_bytes(bytes, "fuzz").is_ok() {
        // A loaded checkpoint must leave a trainer that still works.
        let x = Tensor::<f32>::from_elem(ndarray::IxDyn(&[1, 1, 3, 3]), 0.5);
        let _ = t.model.forward(&x);
        let _ = t.next_lr();
    }
}

fn idx_corpus() -> Vec<Vec<u8>> {
    use flate2::write::GzEncoder;
    use std::io::Write;
    let images = encode_idx(&IdxArray {
        dims: vec![3, 4, 5],
        data: (0..60).collect(),
    });
    let labels = encode_idx(&IdxArray {
        dims: vec![3],
        data: vec![1, 2, 3],
    });
    let gz = |b: &[u8]| {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    };
    vec![gz(&images), gz(&labels), images, labels]
}

fn idx_target(bytes: &[u8]) {
    if let Ok(a) = decode_idx(bytes) {
        let n: usize = a.dims.iter().product();
        assert_eq!(
            n,
            a.data.len(),
            "accepted an array whose dims disagree with its data"
        );
    }
    let _ = convnet::data::parse_idx(bytes);
}

#[test]
#[ignore = "fuzzing: run with --ignored and FUZZ_SECONDS"]
fn fuzz_weights() {
    fuzz("weights", weights_corpus(), &weights_target);
}

#[test]
#[ignore = "fuzzing: run with --ignored and FUZZ_SECONDS"]
fn fuzz_checkpoints() {
    fuzz("checkpoints", checkpoint_corpus(), &checkpoint_target);
}

#[test]
#[ignore = "fuzzing: run with --ignored and FUZZ_SECONDS"]
fn fuzz_idx() {
    fuzz("idx", idx_corpus(), &idx_target);
}

/// The corpora are valid: each reader accepts its seed files (so the fuzzer starts from
/// inputs that reach deep into the parser), and a few hundred mutants run without a crash.
#[test]
fn corpora_are_valid_and_a_short_run_is_clean() {
    for b in weights_corpus() {
        load_weights_from_bytes(&mut model(), &b, "seed").unwrap();
    }
    for b in checkpoint_corpus() {
        trainer().load_checkpoint_from_bytes(&b, "seed").unwrap();
    }
    for b in idx_corpus() {
        decode_idx(&b).unwrap();
    }
    let mut g = Gen(7);
    for (corpus, target) in [
        (weights_corpus(), &weights_target as &dyn Fn(&[u8])),
        (checkpoint_corpus(), &checkpoint_target),
        (idx_corpus(), &idx_target),
    ] {
        for _ in 0..200 {
            let base = &corpus[g.below(corpus.len())];
            target(&mutate(&mut g, base, &corpus));
        }
    }
}
