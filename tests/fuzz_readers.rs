//! A stable-Rust mutation fuzzer for the file readers: safetensors weights, training
//! checkpoints, IDX (raw and gzip), PyTorch `.pth` files (whole files, and pickles re-zipped
//! with valid checksums so that mutants reach the unpickler), ONNX models (imported, then run
//! forward and backward), PNG/JPEG images and CIFAR batches. It starts from valid files, mutates them (bit flips,
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
use convnet::onnx::{OnnxModel, OnnxOptions};
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

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(path),
    )
    .unwrap()
}

const PTH_FIXTURES: [&str; 5] = [
    "pth/checkpoint_nested.pth",
    "pth/lenet5_mnist_f16.pth",
    "pth/resnet_tiny.pth",
    "pth/resnet_tiny_bf16.pth",
    "pth/resnet_tiny_deflated.pth",
];

fn pth_corpus() -> Vec<Vec<u8>> {
    PTH_FIXTURES.iter().map(|p| fixture(p)).collect()
}

fn pth_target(bytes: &[u8]) {
    if let Ok(f) = convnet::io::PthFile::from_bytes(bytes.to_vec(), "fuzz") {
        let _ = f.number("epoch");
        let _ = f.tensors::<f32>(None);
        for key in f.tensor_dicts() {
            let _ = f.tensors::<f64>(Some(&key));
        }
    }
}

fn u16_at(b: &[u8], i: usize) -> usize {
    u16::from_le_bytes([b[i], b[i + 1]]) as usize
}

fn u32_at(b: &[u8], i: usize) -> usize {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize
}

/// The entries of a valid zip of stored (uncompressed) files, as torch.save writes them.
fn unzip_stored(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let end = b.len() - 22;
    assert_eq!(
        &b[end..end + 4],
        b"PK\x05\x06",
        "no comment after the directory"
    );
    let mut at = u32_at(b, end + 16);
    (0..u16_at(b, end + 10))
        .map(|_| {
            let (size, name_len) = (u32_at(b, at + 20), u16_at(b, at + 28));
            let local = u32_at(b, at + 42);
            let name = String::from_utf8(b[at + 46..at + 46 + name_len].to_vec()).unwrap();
            let start = local + 30 + u16_at(b, local + 26) + u16_at(b, local + 28);
            at += 46 + name_len + u16_at(b, at + 30) + u16_at(b, at + 32);
            (name, b[start..start + size].to_vec())
        })
        .collect()
}

/// A zip of stored files with correct sizes and checksums.
fn zip_stored(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let (mut out, mut dir) = (Vec::new(), Vec::new());
    for (name, data) in entries {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let offset = out.len() as u32;
        let mut fields = crc.sum().to_le_bytes().to_vec();
        fields.extend((data.len() as u32).to_le_bytes());
        fields.extend((data.len() as u32).to_le_bytes());
        fields.extend((name.len() as u16).to_le_bytes());
        out.extend(b"PK\x03\x04\x14\0\0\0\0\0\0\0\0\0");
        out.extend(&fields);
        out.extend([0, 0]);
        out.extend(name.as_bytes());
        out.extend(data);
        dir.extend(b"PK\x01\x02\x14\0\x14\0\0\0\0\0\0\0\0\0");
        dir.extend(&fields);
        dir.extend([0; 12]);
        dir.extend(offset.to_le_bytes());
        dir.extend(name.as_bytes());
    }
    let (start, count) = (out.len() as u32, (entries.len() as u16).to_le_bytes());
    out.extend(b"PK\x05\x06\0\0\0\0");
    out.extend(count);
    out.extend(count);
    out.extend((dir.len() as u32).to_le_bytes());
    out.extend(start.to_le_bytes());
    out.extend([0, 0]);
    out.splice(start as usize..start as usize, dir);
    out
}

/// The archive whose pickle the pickle fuzzer mutates: the richest fixture (a nested
/// checkpoint of 60 tensors).
fn pickle_archive() -> Vec<(String, Vec<u8>)> {
    unzip_stored(&fixture("pth/checkpoint_nested.pth"))
}

fn pickle_corpus() -> Vec<Vec<u8>> {
    let entries = pickle_archive();
    let pickle = entries
        .iter()
        .find(|(n, _)| n.ends_with("/data.pkl"))
        .unwrap();
    vec![pickle.1.clone()]
}

/// Zips the mutated pickle with the fixture's storages (valid checksums), so the mutant
/// reaches the unpickler and the tensor gathering instead of failing the zip's CRC check.
fn pickle_target(pickle: &[u8]) {
    let mut entries = pickle_archive();
    for (name, data) in &mut entries {
        if name.ends_with("/data.pkl") {
            *data = pickle.to_vec();
        }
    }
    pth_target(&zip_stored(&entries));
}

const ONNX_FIXTURES: [&str; 6] = [
    "onnx/allops.onnx",
    "onnx/handmade.onnx",
    "onnx/interop.onnx",
    "onnx/interop_dynamo.onnx",
    "onnx/lenet5.onnx",
    "onnx/padded.onnx",
];

fn onnx_corpus() -> Vec<Vec<u8>> {
    ONNX_FIXTURES.iter().map(|p| fixture(p)).collect()
}

/// Imports as it is, or (the interop fixtures have a symbolic height and width) at 9x11.
fn onnx_import(bytes: &[u8], dir: &std::path::Path) -> convnet::Result<OnnxModel<f32>> {
    convnet::onnx::load_onnx_bytes::<f32>(bytes, Some(dir), "fuzz").or_else(|_| {
        let options = OnnxOptions::new().input_shape(&[1, 3, 9, 11]);
        convnet::onnx::load_onnx_bytes_with::<f32>(bytes, Some(dir), "fuzz", &options)
    })
}

/// Imports the model (external data from the fixtures' folder) and, when it imports, runs
/// it on a batch of one: summary, inference, forward and backward.
fn onnx_target(bytes: &[u8]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let Ok(mut m) = onnx_import(bytes, &dir) else {
        return;
    };
    let Ok(shape) = m.input_shape_for(1) else {
        return;
    };
    if shape.iter().product::<usize>() > 1 << 20 {
        return;
    }
    let x = Tensor::<f32>::from_elem(ndarray::IxDyn(&shape), 0.5);
    let _ = m.graph.summary(&shape);
    let _ = m.graph.infer(&x);
    m.graph.set_mode(Mode::Train);
    if let Ok(y) = m.graph.forward(&x) {
        let _ = m.graph.backward(&y);
    }
}

#[cfg(feature = "image")]
fn image_corpus() -> Vec<Vec<u8>> {
    vec![fixture("vision/photo.png"), fixture("vision/photo.jpg")]
}

#[cfg(feature = "image")]
fn image_target(bytes: &[u8]) {
    if let Ok(img) = convnet::vision::decode_bytes(bytes) {
        let _ = img.to_tensor();
    }
}

#[cfg(feature = "image")]
fn cifar_corpus() -> Vec<Vec<u8>> {
    let record = |labels: &[u8], value: u8| {
        let mut r = labels.to_vec();
        r.extend([value; 3072]);
        r
    };
    vec![
        [record(&[0], 1), record(&[9], 2), record(&[3], 3)].concat(),
        [record(&[1, 7], 4), record(&[19, 99], 5)].concat(),
    ]
}

#[cfg(feature = "image")]
fn cifar_target(bytes: &[u8]) {
    use convnet::vision::{Cifar, CifarKind};
    for kind in [
        CifarKind::Ten,
        CifarKind::HundredCoarse,
        CifarKind::HundredFine,
    ] {
        if let Ok(c) = Cifar::from_bytes(kind, bytes) {
            for i in 0..=c.labels().len() {
                let _ = c.image(i);
            }
        }
    }
}

#[test]
#[ignore = "fuzzing: run with --ignored and FUZZ_SECONDS"]
fn fuzz_pth() {
    fuzz("pth", pth_corpus(), &pth_target);
}

#[test]
#[ignore = "fuzzing: run with --ignored and FUZZ_SECONDS"]
fn fuzz_pth_pickles() {
    fuzz("pth-pickles", pickle_corpus(), &pickle_target);
}

#[test]
#[ignore = "fuzzing: run with --ignored and FUZZ_SECONDS"]
fn fuzz_onnx() {
    fuzz("onnx", onnx_corpus(), &onnx_target);
}

#[cfg(feature = "image")]
#[test]
#[ignore = "fuzzing: run with --ignored and FUZZ_SECONDS"]
fn fuzz_images() {
    fuzz("images", image_corpus(), &image_target);
}

#[cfg(feature = "image")]
#[test]
#[ignore = "fuzzing: run with --ignored and FUZZ_SECONDS"]
fn fuzz_cifar() {
    fuzz("cifar", cifar_corpus(), &cifar_target);
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
    for b in pth_corpus() {
        assert!(!convnet::io::PthFile::from_bytes(b, "seed")
            .unwrap()
            .tensor_dicts()
            .is_empty());
    }
    // Unzipped and zipped again, the fixture still reads.
    let rezipped = zip_stored(&pickle_archive());
    let nested = convnet::io::PthFile::from_bytes(rezipped, "seed").unwrap();
    assert!(!nested.tensor_dicts().is_empty());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    for b in onnx_corpus() {
        onnx_import(&b, &dir).unwrap();
    }
    let mut g = Gen(7);
    // Each target: its seed corpus and the reader it feeds.
    type Target<'a> = (Vec<Vec<u8>>, &'a dyn Fn(&[u8]));
    #[allow(unused_mut)]
    let mut targets: Vec<Target> = vec![
        (weights_corpus(), &weights_target),
        (checkpoint_corpus(), &checkpoint_target),
        (idx_corpus(), &idx_target),
        (pth_corpus(), &pth_target),
        (pickle_corpus(), &pickle_target),
        (onnx_corpus(), &onnx_target),
    ];
    #[cfg(feature = "image")]
    {
        for b in image_corpus() {
            convnet::vision::decode_bytes(&b).unwrap();
        }
        for b in cifar_corpus() {
            convnet::vision::Cifar::from_bytes(convnet::vision::CifarKind::HundredFine, &b)
                .unwrap_or_else(|_| {
                    convnet::vision::Cifar::from_bytes(convnet::vision::CifarKind::Ten, &b).unwrap()
                });
        }
        targets.push((image_corpus(), &image_target));
        targets.push((cifar_corpus(), &cifar_target));
    }
    for (corpus, target) in targets {
        for _ in 0..200 {
            let base = &corpus[g.below(corpus.len())];
            target(&mutate(&mut g, base, &corpus));
        }
    }
}
