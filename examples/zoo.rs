//! The model zoo from the command line.
//!
//! ```text
//! cargo run --release --example zoo -- list
//! cargo run --release --example zoo -- summary alexnet
//! cargo run --release --example zoo -- forward resnet18 --weights W.safetensors \
//!     --input X.safetensors --output Y.safetensors
//! ```
//!
//! `forward` loads a torchvision-compatible `state_dict` (safetensors, or a `.pth` written by
//! `torch.save`; `--weights-key KEY` picks the dict inside a nested checkpoint), reads the tensor
//! `input` (NCHW, f32) from X, runs the model's inference path (`Layer::infer`: evaluation
//! behaviour, batch norm folded into the convolutions) and writes the logits as tensor
//! `output` to Y.

use convnet::io::{load_pth_weights, load_weights, read_tensors, write_tensors};
use convnet::zoo::{self, MODELS};
use convnet::{Layer, Tensor};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: zoo list | zoo summary MODEL [--classes N] | \
zoo forward MODEL --weights W.safetensors|W.pth [--weights-key KEY] --input X.safetensors \
--output Y.safetensors [--classes N]";

const FORWARD_FLAGS: &[&str] = &[
    "--weights",
    "--weights-key",
    "--input",
    "--output",
    "--classes",
];

fn flag(args: &[String], name: &str) -> Result<Option<String>, String> {
    match args.iter().position(|a| a == name) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .cloned()
            .map(Some)
            .ok_or_else(|| format!("{name} needs a value")),
    }
}

fn check_flags(args: &[String], allowed: &[&str]) -> Result<(), String> {
    let mut i = 0;
    while i < args.len() {
        if !allowed.contains(&args[i].as_str()) {
            return Err(format!("unexpected argument `{}`\n{USAGE}", args[i]));
        }
        i += 2;
    }
    Ok(())
}

fn classes(args: &[String]) -> Result<usize, String> {
    match flag(args, "--classes")? {
        None => Ok(1000),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("--classes: `{v}` is not a positive whole number")),
        },
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let (command, rest) = args.split_first().ok_or(USAGE)?;
    match command.as_str() {
        "list" => {
            for m in MODELS {
                println!(
                    "{:<22} {:>4}x{:<4} {}",
                    m.name, m.input[1], m.input[2], m.about
                );
            }
            Ok(())
        }
        "summary" => {
            let (name, flags) = rest.split_first().ok_or(USAGE)?;
            check_flags(flags, &["--classes"])?;
            let info = zoo::info(name).map_err(|e| e.to_string())?;
            let model = zoo::build::<f32>(name, classes(flags)?).map_err(|e| e.to_string())?;
            let [c, h, w] = info.input;
            let summary = model.summary(&[1, c, h, w]).map_err(|e| e.to_string())?;
            println!("{name}");
            println!("{summary}");
            Ok(())
        }
        "forward" => {
            let (name, flags) = rest.split_first().ok_or(USAGE)?;
            check_flags(flags, FORWARD_FLAGS)?;
            let need = |f: &str| -> Result<PathBuf, String> {
                flag(flags, f)?
                    .map(PathBuf::from)
                    .ok_or_else(|| format!("forward needs {f} FILE\n{USAGE}"))
            };
            let (weights, input, output) =
                (need("--weights")?, need("--input")?, need("--output")?);
            let mut model = zoo::build::<f32>(name, classes(flags)?).map_err(|e| e.to_string())?;
            match flag(flags, "--weights-key")? {
                Some(key) => load_pth_weights(&mut model, &weights, Some(&key)),
                None => load_weights(&mut model, &weights),
            }
            .map_err(|e| e.to_string())?;
            let x: Tensor<f32> = read_tensors::<f32>(&input)
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|(n, _)| n == "input")
                .map(|(_, t)| t)
                .ok_or_else(|| format!("{}: no tensor named `input`", input.display()))?;
            let y = model.infer(&x).map_err(|e| e.to_string())?;
            write_tensors(&output, &[("output".to_string(), y.clone())], None)
                .map_err(|e| e.to_string())?;
            println!(
                "{name}: input {:?} -> output {:?}, written to {}",
                x.shape(),
                y.shape(),
                output.display()
            );
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    }
}

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
