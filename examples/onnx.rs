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

fn flag(args: &[String], name: &str) -> Result<PathBuf, String> {
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .map(PathBuf::from)
            .ok_or_else(|| format!("{name} needs a value")),
        None => Err(format!("run needs {name} FILE\n{USAGE}")),
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let (command, rest) = args.split_first().ok_or(USAGE)?;
    let (path, flags) = rest.split_first().ok_or(USAGE)?;
    let path = PathBuf::from(path);
    match command.as_str() {
        "summary" => {
            if !flags.is_empty() {
                return Err(format!("unexpected arguments {flags:?}\n{USAGE}"));
            }
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
            let mut i = 0;
            while i < flags.len() {
                if !["--input", "--output"].contains(&flags[i].as_str()) {
                    return Err(format!("unexpected argument `{}`\n{USAGE}", flags[i]));
                }
                i += 2;
            }
            let (input, output) = (flag(flags, "--input")?, flag(flags, "--output")?);
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
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
