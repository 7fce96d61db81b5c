//! Look inside a trained LeNet-5: its first-layer filters and what its conv layers see.
//!
//! ```text
//! cargo run --release --example mnist              # once: writes out/mnist/lenet5_mnist.safetensors
//! cargo run --release --example feature_maps
//! cargo run --release --example feature_maps -- --index 1 --out out/feature_maps_1
//! ```
//!
//! Loads the weights (`--weights`, default `out/mnist/lenet5_mnist.safetensors`), takes MNIST
//! test image `--index` (default 0, a 7) from `--data` (default `data/mnist`), runs it through
//! the network one layer at a time in eval mode and writes to `--out` (default
//! `out/feature_maps`):
//!
//! * `input.png` — the digit itself;
//! * `filters.png` — the 6 first-layer 5x5 filters (blue negative, white zero, red positive,
//!   one scale for all six);
//! * `feature_maps_conv1.png` — the 6 maps after conv1 + ReLU, 28x28 each;
//! * `feature_maps_conv2.png` — the 16 maps after conv2 + ReLU, 10x10 each.
//!
//! Feature maps are grey, black at 0 and white at each map's own maximum (printed, so a map
//! that stays dark because it is all zero can be told apart from a weak one).

mod common;

use convnet::data::{Mnist, MNIST_MEAN, MNIST_STD};
use convnet::io::load_weights;
use convnet::zoo::lenet5_modern;
use convnet::{Layer, Mode, Slot, Tensor};
use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: feature_maps [--weights FILE] [--index N] [--data DIR] [--out DIR]";

struct Args {
    weights: PathBuf,
    index: usize,
    data: PathBuf,
    out: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        weights: PathBuf::from("out/mnist/lenet5_mnist.safetensors"),
        index: 0,
        data: PathBuf::from("data/mnist"),
        out: PathBuf::from("out/feature_maps"),
    };
    use lexopt::prelude::*;
    let fail = |e: lexopt::Error| format!("{e}\n{USAGE}");
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(fail)? {
        match arg {
            Long("help") | Short('h') => return Err(USAGE.into()),
            Long("weights") => args.weights = parser.value().map_err(fail)?.into(),
            Long("index") => args.index = parser.value().map_err(fail)?.parse().map_err(fail)?,
            Long("data") => args.data = parser.value().map_err(fail)?.into(),
            Long("out") => args.out = parser.value().map_err(fail)?.into(),
            other => return Err(fail(other.unexpected())),
        }
    }
    Ok(args)
}

/// Stacks `n` tiles of `h x w` values into a grid of `cols` columns, each value drawn as a
/// `scale x scale` block coloured by `colour`, with a 2-pixel grey gap around every tile.
fn grid(
    values: &[f32],
    [n, h, w]: [usize; 3],
    cols: usize,
    scale: usize,
    colour: impl Fn(usize, f32) -> [u8; 3],
) -> RgbImage {
    const GAP: usize = 2;
    let rows = n.div_ceil(cols);
    let (tile_h, tile_w) = (h * scale + GAP, w * scale + GAP);
    let mut img = RgbImage::from_pixel(
        (cols * tile_w + GAP) as u32,
        (rows * tile_h + GAP) as u32,
        Rgb([128, 128, 128]),
    );
    for (t, tile) in values.chunks(h * w).take(n).enumerate() {
        let (x0, y0) = (GAP + (t % cols) * tile_w, GAP + (t / cols) * tile_h);
        for (i, &v) in tile.iter().enumerate() {
            let px = Rgb(colour(t, v));
            let (y, x) = (y0 + (i / w) * scale, x0 + (i % w) * scale);
            for dy in 0..scale {
                for dx in 0..scale {
                    img.put_pixel((x + dx) as u32, (y + dy) as u32, px);
                }
            }
        }
    }
    img
}

/// Grey: 0 (or less) black, `max` white.
fn grey(v: f32, max: f32) -> [u8; 3] {
    let g = if max > 0.0 {
        (v / max).clamp(0.0, 1.0)
    } else {
        0.0
    };
    [(255.0 * g).round() as u8; 3]
}

/// Diverging: `-max` blue, 0 white, `+max` red.
fn diverging(v: f32, max: f32) -> [u8; 3] {
    let s = if max > 0.0 {
        (v / max).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let fade = (255.0 * (1.0 - s.abs())).round() as u8;
    if s >= 0.0 {
        [255, fade, fade]
    } else {
        [fade, fade, 255]
    }
}

/// Per-map maxima of `n` maps stored one after another.
fn map_maxima(values: &[f32], n: usize) -> Vec<f32> {
    let size = values.len() / n.max(1);
    values
        .chunks(size.max(1))
        .map(|m| m.iter().cloned().fold(0.0, f32::max))
        .collect()
}

fn save(img: &RgbImage, path: &Path, what: &str) -> Result<(), String> {
    img.save(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {} ({what})", path.display());
    Ok(())
}

fn save_maps(path: &Path, maps: &Tensor<f32>, cols: usize, scale: usize) -> Result<(), String> {
    let &[_, n, h, w] = maps.shape() else {
        return Err(format!(
            "expected [1, C, H, W] maps, got {:?}",
            maps.shape()
        ));
    };
    let values: Vec<f32> = maps.iter().cloned().collect();
    let maxima = map_maxima(&values, n);
    let img = grid(&values, [n, h, w], cols, scale, |t, v| grey(v, maxima[t]));
    save(&img, path, &format!("{n} maps of {h}x{w}"))?;
    let listed: Vec<String> = maxima.iter().map(|m| format!("{m:.2}")).collect();
    println!("    per-map maxima: {}", listed.join(" "));
    Ok(())
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if !args.weights.is_file() {
        return Err(format!(
            "weights file {} not found: run `cargo run --release --example mnist` first to \
             train LeNet-5 and write it, or pass --weights FILE",
            args.weights.display()
        )
        .into());
    }
    let mut model = lenet5_modern::<f32>(10)?;
    load_weights(&mut model, &args.weights)?;
    model.set_mode(Mode::Eval);

    let mnist = Mnist::load(&args.data)?;
    let Some(&label) = mnist.test.labels().get(args.index) else {
        return Err(format!(
            "--index {} is out of range: the test set has {} images",
            args.index,
            mnist.test.labels().len()
        )
        .into());
    };
    let pixels = mnist.test.pixels(args.index);
    if pixels.len() != 28 * 28 {
        return Err("MNIST test images are not 28x28".into());
    }
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;

    let raw: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    save(
        &grid(&raw, [1, 28, 28], 1, 8, |_, v| grey(v, 1.0)),
        &args.out.join("input.png"),
        &format!("MNIST test image {}, a {label}", args.index),
    )?;

    // The first layer's filters, [6, 1, 5, 5], drawn on one symmetric scale.
    let Some(conv1) = model.layers().iter().find(|l| l.kind() == "Conv2d") else {
        return Err("the model has no Conv2d layer".into());
    };
    let mut filters = Vec::new();
    let mut filter_shape = Vec::new();
    conv1.visit(&mut |name, slot| {
        if let ("weight", Slot::Param(p)) = (name, slot) {
            filters = p.value.iter().cloned().collect();
            filter_shape = p.value.shape().to_vec();
        }
    });
    let &[n, _, kh, kw] = filter_shape.as_slice() else {
        return Err(format!("unexpected conv1 weight shape {filter_shape:?}").into());
    };
    let max_abs = filters.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    save(
        &grid(&filters, [n, kh, kw], n, 24, |_, v| diverging(v, max_abs)),
        &args.out.join("filters.png"),
        &format!("{n} filters of {kh}x{kw}, blue -{max_abs:.2} .. red +{max_abs:.2}"),
    )?;

    // Run the layers one at a time and keep the output of each ReLU that follows a conv.
    let input = Tensor::<f32>::from_shape_vec(
        ndarray::IxDyn(&[1, 1, 28, 28]),
        raw.iter()
            .map(|&v| ((v as f64 - MNIST_MEAN) / MNIST_STD) as f32)
            .collect(),
    )?;
    let mut x = input;
    let mut after_conv = false;
    let mut saved = 0;
    for layer in model.layers_mut() {
        x = layer.forward(&x)?;
        if layer.kind() == "ReLU" && after_conv && saved < 2 {
            saved += 1;
            let (cols, scale) = if saved == 1 { (3, 6) } else { (4, 16) };
            let path = args.out.join(format!("feature_maps_conv{saved}.png"));
            save_maps(&path, &x, cols, scale)?;
        }
        after_conv = layer.kind() == "Conv2d";
    }

    let logits: Vec<f32> = x.iter().cloned().collect();
    let predicted = (0..logits.len()).fold(0, |b, c| if logits[c] > logits[b] { c } else { b });
    println!("label {label}, predicted {predicted}");
    Ok(())
}

fn main() -> ExitCode {
    common::main_with(parse_args, run)
}
