//! The model zoo from the command line.
//!
//! ```text
//! cargo run --release --example zoo -- list
//! cargo run --release --example zoo -- summary alexnet
//! cargo run --release --example zoo -- forward resnet18 --weights W.safetensors \
//!     --input X.safetensors --output Y.safetensors
//! ```
//!
//! Each model has its natural number of classes (10 for the LeNet-5s, 1,000 for the ImageNet
//! models; `list` shows it); `--classes N` changes it.
//!
//! `forward` loads a torchvision-compatible `state_dict` (safetensors, or a `.pth` written by
//! `torch.save`; `--weights-key KEY` picks the dict inside a nested checkpoint), reads the tensor
//! `input` (NCHW, f32) from X, runs the model's inference path (`Layer::infer`: evaluation
//! behaviour, batch norm folded into the convolutions) and writes the logits as tensor
//! `output` to Y.

mod common;

use convnet::io::{load_pth_weights, load_weights, read_tensors, write_tensors};
use convnet::zoo::{self, MODELS};
use convnet::{Layer, Tensor};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: zoo list | zoo summary MODEL [--classes N] | \
zoo forward MODEL --weights W.safetensors|W.pth [--weights-key KEY] --input X.safetensors \
--output Y.safetensors [--classes N]";

enum Command {
    List,
    Summary {
        model: String,
        classes: Option<usize>,
    },
    Forward {
        model: String,
        classes: Option<usize>,
        weights: PathBuf,
        weights_key: Option<String>,
        input: PathBuf,
        output: PathBuf,
    },
}

fn parse_args() -> Result<Command, String> {
    use lexopt::prelude::*;
    let fail = |e: lexopt::Error| format!("{e}\n{USAGE}");
    let mut parser = lexopt::Parser::from_env();
    let mut positional: Vec<String> = Vec::new();
    let (mut classes, mut weights, mut weights_key, mut input, mut output) =
        (None, None, None, None, None);
    while let Some(arg) = parser.next().map_err(fail)? {
        match arg {
            Long("help") | Short('h') => return Err(USAGE.into()),
            Long("classes") => {
                let n: usize = parser.value().map_err(fail)?.parse().map_err(fail)?;
                if n == 0 {
                    return Err("--classes: must be at least 1".into());
                }
                classes = Some(n);
            }
            Long("weights") => weights = Some(PathBuf::from(parser.value().map_err(fail)?)),
            Long("weights-key") => {
                weights_key = Some(parser.value().map_err(fail)?.string().map_err(fail)?)
            }
            Long("input") => input = Some(PathBuf::from(parser.value().map_err(fail)?)),
            Long("output") => output = Some(PathBuf::from(parser.value().map_err(fail)?)),
            Value(v) => positional.push(v.string().map_err(fail)?),
            other => return Err(fail(other.unexpected())),
        }
    }
    let forward_only = weights.is_some() || weights_key.is_some() || input.is_some();
    match positional.as_slice() {
        [c] if c == "list" && classes.is_none() && !forward_only && output.is_none() => {
            Ok(Command::List)
        }
        [c, model] if c == "summary" && !forward_only && output.is_none() => Ok(Command::Summary {
            model: model.clone(),
            classes,
        }),
        [c, model] if c == "forward" => {
            let need = |f: Option<PathBuf>, name: &str| {
                f.ok_or_else(|| format!("forward needs {name} FILE\n{USAGE}"))
            };
            Ok(Command::Forward {
                model: model.clone(),
                classes,
                weights: need(weights, "--weights")?,
                weights_key,
                input: need(input, "--input")?,
                output: need(output, "--output")?,
            })
        }
        [c, ..] if !["list", "summary", "forward"].contains(&c.as_str()) => {
            Err(format!("unknown command `{c}`\n{USAGE}"))
        }
        _ => Err(format!("unexpected arguments {positional:?}\n{USAGE}")),
    }
}

fn build(name: &str, classes: Option<usize>) -> convnet::Result<Box<dyn Layer<f32>>> {
    match classes {
        Some(n) => zoo::build::<f32>(name, n),
        None => zoo::build_default::<f32>(name),
    }
}

fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::List => {
            for m in MODELS {
                println!(
                    "{:<22} {:>4}x{:<4} {:>4} classes  {}",
                    m.name, m.input[1], m.input[2], m.classes, m.about
                );
            }
        }
        Command::Summary { model, classes } => {
            let info = zoo::info(&model)?;
            let net = build(&model, classes)?;
            let [c, h, w] = info.input;
            println!("{model}");
            println!("{}", net.summary(&[1, c, h, w])?);
        }
        Command::Forward {
            model,
            classes,
            weights,
            weights_key,
            input,
            output,
        } => {
            let mut net = build(&model, classes)?;
            match weights_key {
                Some(key) => load_pth_weights(&mut net, &weights, Some(&key))?,
                None => load_weights(&mut net, &weights)?,
            }
            let x: Tensor<f32> = read_tensors::<f32>(&input)?
                .into_iter()
                .find(|(n, _)| n == "input")
                .map(|(_, t)| t)
                .ok_or_else(|| format!("{}: no tensor named `input`", input.display()))?;
            let y = net.infer(&x)?;
            write_tensors(&output, &[("output".to_string(), y.clone())], None)?;
            println!(
                "{model}: input {:?} -> output {:?}, written to {}",
                x.shape(),
                y.shape(),
                output.display()
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    common::main_with(parse_args, run)
}
