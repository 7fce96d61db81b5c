//! Run an ONNX model (for instance one written by `torch.onnx.export`) with convnet's layers.
//!
//! ```text
//! cargo run --release --example onnx -- summary model.onnx [--shape 1,3,224,224]
//! cargo run --release --example onnx -- run model.onnx --input X.safetensors --output Y.safetensors
//! ```
//!
//! `summary` prints the imported graph the way the course lists AlexNet, for a batch of one.
//! `run` reads the tensor `input` (NCHW, as `zoo forward` takes it) from X, runs the model's
//! inference path and writes the tensor `output` to Y. A model whose batch axis is symbolic
//! takes any batch size; symbolic height and width are imported at the input's size (and at
//! `--shape` for `summary`).

use convnet::io::{read_tensors, write_tensors};
use convnet::onnx::{load_onnx_with, OnnxOptions};
use convnet::{Layer, Tensor};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: onnx summary MODEL.onnx [--shape N,C,H,W] | \
onnx run MODEL.onnx --input X.safetensors --output Y.safetensors";

/// The command line: `summary MODEL` or `run MODEL --input X --output Y`.
struct Args {
    command: String,
    model: PathBuf,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    shape: Option<Vec<usize>>,
}

fn parse_args() -> Result<Args, String> {
    use lexopt::prelude::*;
    let fail = |e: lexopt::Error| format!("{e}\n{USAGE}");
    let mut parser = lexopt::Parser::from_env();
    let (mut positional, mut input, mut output, mut shape) = (Vec::new(), None, None, None);
    while let Some(arg) = parser.next().map_err(fail)? {
        match arg {
            Long("help") | Short('h') => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            Long("input") => {
                let v = parser
                    .value()
                    .map_err(|_| "--input needs a value".to_string())?;
                input = Some(PathBuf::from(v));
            }
            Long("output") => {
                let v = parser
                    .value()
                    .map_err(|_| "--output needs a value".to_string())?;
                output = Some(PathBuf::from(v));
            }
            Long("shape") => {
                let v = parser
                    .value()
                    .map_err(|_| "--shape needs a value".to_string())?;
                let text = v.string().map_err(fail)?;
                let dims = text
                    .split(',')
                    .map(|d| d.trim().parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| format!("--shape: `{text}` is not a list like 1,3,224,224"))?;
                shape = Some(dims);
            }
            Value(v) => positional.push(v.string().map_err(fail)?),
            other => return Err(fail(other.unexpected())),
        }
    }
    let mut positional = positional.into_iter();
    let command = positional.next().ok_or(USAGE)?;
    let model = PathBuf::from(positional.next().ok_or(USAGE)?);
    let rest: Vec<String> = positional.collect();
    if !rest.is_empty() {
        return Err(format!("unexpected arguments {rest:?}\n{USAGE}"));
    }
    if command == "summary" && (input.is_some() || output.is_some()) {
        return Err(format!("summary takes no --input/--output\n{USAGE}"));
    }
    if command == "run" && shape.is_some() {
        return Err(format!("run takes its shape from --input\n{USAGE}"));
    }
    Ok(Args {
        command,
        model,
        input,
        output,
        shape,
    })
}

/// A path flag `run` needs.
fn required(path: Option<PathBuf>, name: &str) -> Result<PathBuf, String> {
    path.ok_or_else(|| format!("run needs {name} FILE\n{USAGE}"))
}

fn run(args: Args) -> Result<(), String> {
    let path = args.model;
    match args.command.as_str() {
        "summary" => {
            let options = match &args.shape {
                Some(s) => OnnxOptions::new().input_shape(s),
                None => OnnxOptions::new(),
            };
            let model = load_onnx_with::<f32>(&path, &options).map_err(|e| e.to_string())?;
            let batch = match (model.input_shape.first(), &args.shape) {
                (Some(Some(b)), _) => *b,
                (_, Some(s)) => s.first().copied().unwrap_or(1),
                _ => 1,
            };
            let shape = model.input_shape_for(batch).map_err(|e| e.to_string())?;
            let summary = model.graph.summary(&shape).map_err(|e| e.to_string())?;
            println!(
                "{} (opset {}, input `{}` {}, output `{}`)",
                path.display(),
                model.opset,
                model.input_name,
                show_dims(&model.input_shape),
                model.output_name
            );
            println!("{summary}");
            Ok(())
        }
        "run" => {
            let input = required(args.input, "--input")?;
            let output = required(args.output, "--output")?;
            let x: Tensor<f32> = read_tensors::<f32>(&input)
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|(n, _)| n == "input")
                .map(|(_, t)| t)
                .ok_or_else(|| format!("{}: no tensor named `input`", input.display()))?;
            // Symbolic axes are imported at the input's size.
            let options = OnnxOptions::new().input_shape(x.shape());
            let model = load_onnx_with::<f32>(&path, &options).map_err(|e| e.to_string())?;
            let y = model.graph.infer(&x).map_err(|e| e.to_string())?;
            write_tensors(&output, &[("output".to_string(), y.clone())], None)
                .map_err(|e| e.to_string())?;
            println!(
                "{}: input {:?} -> output {:?}, written to {}",
                path.display(),
                x.shape(),
                y.shape(),
                output.display()
            );
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    }
}

fn show_dims(dims: &[Option<usize>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .enumerate()
        .map(|(i, d)| match (i, d) {
            (_, Some(v)) => v.to_string(),
            (0, None) => "N".to_string(),
            _ => "?".to_string(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
