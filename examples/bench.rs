//! Time one training step or one inference call of any zoo model.
//!
//! ```text
//! cargo run --release --example bench -- --model resnet50 --batch 8 --mode train --iters 10
//! cargo run --release --example bench -- --model lenet5_modern --batch 64 --mode infer \
//!     --iters 50 --warmup 5 --threads 2 --dtype f32
//! ```
//!
//! `train` times forward, cross-entropy, backward, an SGD step (momentum 0.9, lr 1e-4) and
//! `zero_grad`; `infer` times [`Layer::infer`]. After `--warmup` untimed iterations (default 2)
//! it runs `--iters` timed ones (default 10), prints each to stderr with the process's peak
//! memory, and ends stdout with exactly one line:
//!
//! ```text
//! resnet50 train batch 8: median 1234.5 ms/iter, 6.48 img/s
//! ```
//!
//! The input is `[batch, C, N, N]` with the model's natural `C x N x N` (`--size N` overrides
//! `N`), filled with fixed pseudo-random values; LeNets get 10 classes, the others 1000
//! (`--classes`). `--threads N` sizes the one thread pool ([`convnet::set_num_threads`]).
//! `--replicas N` trains `N` copies of the model at once, each on its own thread and its share
//! of the batch ([`convnet::model::Replicated`]; default 1: one model whose layers use the
//! whole pool); inference always runs one model.

mod common;

use convnet::loss::CrossEntropyLoss;
use convnet::optim::{Optimizer, Sgd, SgdConfig};
use convnet::rng::Rng64;
use convnet::zoo;
use convnet::{Float, Layer, Mode, Tensor};
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: bench --model NAME [--batch N] [--mode train|infer] [--iters N] \
[--warmup N] [--threads N] [--replicas N] [--dtype f32|f64] [--size N] [--classes N]";

struct Args {
    model: String,
    batch: usize,
    train: bool,
    iters: usize,
    warmup: usize,
    threads: Option<usize>,
    replicas: usize,
    f64: bool,
    size: Option<usize>,
    classes: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        model: String::new(),
        batch: 8,
        train: true,
        iters: 10,
        warmup: 2,
        threads: None,
        replicas: 1,
        f64: false,
        size: None,
        classes: None,
    };
    use lexopt::prelude::*;
    let fail = |e: lexopt::Error| format!("{e} ({USAGE})");
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(fail)? {
        let flag = match &arg {
            Long(name) => format!("--{name}"),
            _ => return Err(fail(arg.unexpected())),
        };
        let value = parser.value().map_err(fail)?.string().map_err(fail)?;
        let positive = |v: &str| match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{flag}: `{v}` is not a positive whole number")),
        };
        match flag.as_str() {
            "--model" => {
                zoo::info(&value).map_err(|e| e.to_string())?;
                args.model = value;
            }
            "--batch" => args.batch = positive(&value)?,
            "--mode" => {
                args.train = match value.as_str() {
                    "train" => true,
                    "infer" => false,
                    other => return Err(format!("--mode: `{other}` is not train or infer")),
                }
            }
            "--iters" => args.iters = positive(&value)?,
            "--warmup" => {
                args.warmup = value
                    .parse()
                    .map_err(|_| format!("--warmup: `{value}` is not a whole number"))?
            }
            "--threads" => args.threads = Some(positive(&value)?),
            "--replicas" => args.replicas = positive(&value)?,
            "--dtype" => {
                args.f64 = match value.as_str() {
                    "f32" => false,
                    "f64" => true,
                    other => return Err(format!("--dtype: `{other}` is not f32 or f64")),
                }
            }
            "--size" => args.size = Some(positive(&value)?),
            "--classes" => args.classes = Some(positive(&value)?),
            other => return Err(format!("unknown flag `{other}` ({USAGE})")),
        }
    }
    if args.model.is_empty() {
        return Err(format!("--model is required ({USAGE})"));
    }
    Ok(args)
}

/// Peak resident memory of this process so far, in MiB (Linux; `None` elsewhere).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Builds the model and input, runs the warm-up and timed iterations, returns the timed
/// milliseconds.
fn measure<T: Float>(args: &Args) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let info = zoo::info(&args.model)?;
    let classes = args.classes.unwrap_or(info.classes);
    convnet::init::manual_seed(0);
    let mut model = zoo::build::<T>(&args.model, classes)?;
    if args.replicas > 1 {
        model = Box::new(convnet::model::Replicated::from_model(
            model,
            args.replicas,
            || zoo::build::<T>(&args.model, classes),
        )?);
    }
    let [c, natural, _] = info.input;
    let side = args.size.unwrap_or(natural);
    let shape = [args.batch, c, side, side];
    model.output_shape(&shape)?;
    let mut rng = Rng64::seed(1);
    let x = Tensor::<T>::from_shape_simple_fn(ndarray::IxDyn(&shape), || {
        T::of(2.0 * rng.uniform() - 1.0)
    });
    let labels: Vec<usize> = (0..args.batch).map(|i| (7 * i + 3) % classes).collect();
    let loss_fn = CrossEntropyLoss::new();
    let mut opt = Sgd::new(SgdConfig::new(1e-4).momentum(0.9))?;
    model.set_mode(if args.train { Mode::Train } else { Mode::Eval });
    eprintln!(
        "{} ({}, {} params): {} batch {} at {c}x{side}x{side}, {}, {} threads, {} replicas",
        args.model,
        T::DTYPE.to_lowercase(),
        model.num_params(),
        if args.train { "train" } else { "infer" },
        args.batch,
        if args.train {
            "forward + cross-entropy + backward + SGD(momentum 0.9) + zero_grad"
        } else {
            "Layer::infer"
        },
        convnet::num_threads(),
        args.replicas
    );
    let mut times = Vec::with_capacity(args.iters);
    for i in 0..args.warmup + args.iters {
        let start = Instant::now();
        if args.train {
            let logits = model.forward(&x)?;
            let (loss, grad) = loss_fn.forward(&logits, &labels)?;
            model.backward_params(&grad)?;
            opt.step(model.as_mut())?;
            model.zero_grad();
            black_box(loss);
        } else {
            black_box(model.infer(&x)?);
        }
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let what = if i < args.warmup {
            format!("warm-up {}/{}", i + 1, args.warmup)
        } else {
            times.push(ms);
            format!("iter {}/{}", i + 1 - args.warmup, args.iters)
        };
        let rss = peak_rss_mib().map_or(String::new(), |m| format!(", peak RSS {m:.0} MiB"));
        eprintln!("{what}: {ms:.1} ms{rss}");
    }
    Ok(times)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(n) = args.threads {
        convnet::set_num_threads(n)?;
    }
    let times = if args.f64 {
        measure::<f64>(&args)?
    } else {
        measure::<f32>(&args)?
    };
    let ms = median(times);
    println!(
        "{} {} batch {}: median {ms:.1} ms/iter, {:.2} img/s",
        args.model,
        if args.train { "train" } else { "infer" },
        args.batch,
        args.batch as f64 / (ms / 1e3)
    );
    Ok(())
}

fn main() -> ExitCode {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    common::main_with(parse_args, run)
}
