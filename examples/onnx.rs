//! Run an ONNX model (for instance one written by `torch.onnx.export`) with convnet's layers.
//!
//! ```text
//! cargo run --release --example onnx -- summary model.onnx
//! cargo run --release --example onnx -- run model.onnx --input X.safetensors --output Y.safetensors
//! ```
//!
//! `summary` prints the imported graph the way the course lists AlexNet, for a batch of one.
//! `run` reads the tensor `input` (NCHW, as `zoo forward` takes it) from X, runs the model's
//! inference path and writes the tensor `output` to Y. A model whose batch axis is symbolic
//! takes any batch size.

use convnet::io::{read_tensors, write_tensors};
use convnet::onnx::load_onnx;
use convnet::{Layer, Tensor};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: onnx summary MODEL.onnx | \
onnx run MODEL.onnx --input X.safetensors --output Y.safetensors";

/// The command line: `summary MODEL` or `run MODEL --input X --output Y`.
struct Args {
    command: String,
    model: PathBuf,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    use lexopt::prelude::*;
    let fail = |e: lexopt::Error| format!("{e}\n{USAGE}");
    let mut parser = lexopt::Parser::from_env();
    let (mut positional, mut input, mut output) = (Vec::new(), None, None);
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
    Ok(Args {
        command,
        model,
        input,
        output,
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
            let model = load_onnx::<f32>(&path).map_err(|e| e.to_string())?;
            let batch = model.input_shape[0].unwrap_or(1);
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
            let model = load_onnx::<f32>(&path).map_err(|e| e.to_string())?;
            let x: Tensor<f32> = read_tensors::<f32>(&input)
                .map_err(|e| e.to_string())?
                .into_iter()
                .find(|(n, _)| n == "input")
                .map(|(_, t)| t)
                .ok_or_else(|| format!("{}: no tensor named `input`", input.display()))?;
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
        .map(|d| d.map_or("N".to_string(), |v| v.to_string()))
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
