//! Classify a PNG of a handwritten digit with a LeNet-5 trained by the `mnist` example.
//!
//! ```text
//! cargo run --release --example mnist              # once: writes out/mnist/lenet5_mnist.safetensors
//! cargo run --release --example predict -- examples/data/digit_7.png
//! cargo run --release --example predict -- my_digit.png --weights out/mnist/lenet5_mnist.safetensors --show
//! cargo run --release --example predict -- --export-samples examples/data
//! ```
//!
//! Prints the three most likely digits with their softmax probabilities:
//!
//! ```text
//! examples/data/digit_7.png: 28x28, dark background
//! prediction: 7
//!   7   99.99%
//!   2    0.01%
//!   3    0.00%
//! ```
//!
//! Any PNG works (grey or colour, with or without alpha, any size): it is turned to grey
//! (transparent pixels count as white paper), inverted if its border is light (MNIST digits
//! are white on black) and stretched so the background is 0 and the strongest ink 1. A 28x28
//! image is then used as it is; any other size is framed as MNIST was made: cropped to the ink,
//! resized by area averaging so its longer side is 20 pixels, and placed in 28x28 with its
//! centre of mass in the middle. Finally it is normalised with the MNIST mean and std.
//! `--show` prints the 28x28 the network sees.
//!
//! `--explain OUT.png` also writes what the network looked at for its answer: the 28x28 digit
//! it saw, then its saliency map and its Grad-CAM map (at the last layer whose maps are larger
//! than 1x1) for the predicted class blended over the digit, side by side, enlarged 10 times.
//!
//! `--export-samples DIR` writes `digit_7.png` and `digit_2.png` to DIR: test images 0 and 1
//! of the MNIST in `--data` (default `data/mnist`), exactly as stored (28x28 grey, white digit
//! on black). These are the samples shipped in `examples/data/`.

mod common;

use convnet::data::{Mnist, MNIST_MEAN, MNIST_STD};
use convnet::io::load_weights;
use convnet::zoo::lenet5_modern;
use convnet::{Layer, Tensor};
use image::GrayImage;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str =
    "usage: predict IMAGE.png [--weights FILE] [--show] [--explain OUT.png]\n       \
predict --export-samples DIR [--data DIR]";

const SIDE: usize = 28;

struct Args {
    image: Option<PathBuf>,
    weights: PathBuf,
    show: bool,
    export: Option<PathBuf>,
    data: PathBuf,
    explain: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        image: None,
        weights: PathBuf::from("out/mnist/lenet5_mnist.safetensors"),
        show: false,
        export: None,
        data: PathBuf::from("data/mnist"),
        explain: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        if !arg.starts_with("--") && arg != "-h" {
            if args.image.is_some() {
                return Err(format!(
                    "only one image, please (got a second: `{arg}`)\n{USAGE}"
                ));
            }
            args.image = Some(PathBuf::from(arg));
            continue;
        }
        if arg == "--help" || arg == "-h" {
            return Err(USAGE.into());
        }
        if arg == "--show" {
            args.show = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))?;
        match arg.as_str() {
            "--weights" => args.weights = PathBuf::from(value),
            "--export-samples" => args.export = Some(PathBuf::from(value)),
            "--data" => args.data = PathBuf::from(value),
            "--explain" => args.explain = Some(PathBuf::from(value)),
            other => return Err(format!("unknown flag `{other}`\n{USAGE}")),
        }
    }
    if args.image.is_none() && args.export.is_none() {
        return Err(format!("no image given\n{USAGE}"));
    }
    Ok(args)
}

/// Reads a PNG as grey values in `[0, 1]`, compositing any transparency over white.
fn read_grey(path: &Path) -> Result<(Vec<f32>, usize, usize), String> {
    let img = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| format!("{}: {e}", path.display()))?
        .decode()
        .map_err(|e| format!("{}: not a readable image ({e})", path.display()))?
        .to_luma_alpha8();
    let (w, h) = (img.width() as usize, img.height() as usize);
    let grey = img
        .pixels()
        .map(|p| {
            let (l, a) = (p.0[0] as f32 / 255.0, p.0[1] as f32 / 255.0);
            l * a + (1.0 - a)
        })
        .collect();
    Ok((grey, h, w))
}

/// For each output cell of a 1-D resampling from `n_in` to `n_out` cells: the source cells it
/// covers and the fraction of it each one covers (weights sum to 1).
fn area_weights(n_in: usize, n_out: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let (lo, hi) = (o as f64 * scale, (o + 1) as f64 * scale);
            (lo.floor() as usize..(hi.ceil() as usize).min(n_in))
                .map(|i| {
                    let overlap = hi.min(i as f64 + 1.0) - lo.max(i as f64);
                    (i, (overlap / scale) as f32)
                })
                .filter(|&(_, w)| w > 0.0)
                .collect()
        })
        .collect()
}

/// Resamples an `h x w` image to `side x side` by averaging the area each output pixel covers.
fn resize_area(src: &[f32], h: usize, w: usize, side: usize) -> Vec<f32> {
    let (rows, cols) = (area_weights(h, side), area_weights(w, side));
    // Columns first: h x side, then rows: side x side.
    let mut tmp = vec![0.0f32; h * side];
    for (src_row, tmp_row) in src.chunks(w).zip(tmp.chunks_mut(side)) {
        for (t, taps) in tmp_row.iter_mut().zip(&cols) {
            *t = taps.iter().map(|&(i, wt)| src_row[i] * wt).sum();
        }
    }
    let mut out = vec![0.0f32; side * side];
    for (out_row, taps) in out.chunks_mut(side).zip(&rows) {
        for &(i, wt) in taps {
            for (o, &t) in out_row.iter_mut().zip(&tmp[i * side..(i + 1) * side]) {
                *o += t * wt;
            }
        }
    }
    out
}

/// Makes the image look like MNIST: white digit on black, 28x28, values in `[0, 1]`.
/// Returns the pixels and whether the original background was light (and so was inverted).
fn to_mnist(grey: Vec<f32>, h: usize, w: usize) -> Result<(Vec<f32>, bool), String> {
    // The background is whatever the border holds; ink is whatever differs from it.
    let border: Vec<f32> = (0..h)
        .flat_map(|r| (0..w).map(move |c| (r, c)))
        .filter(|&(r, c)| r == 0 || c == 0 || r + 1 == h || c + 1 == w)
        .map(|(r, c)| grey[r * w + c])
        .collect();
    let paper = border.iter().sum::<f32>() / border.len() as f32;
    let light = paper > 0.5;
    let ink: Vec<f32> = grey
        .into_iter()
        .map(|v| if light { 1.0 - v } else { v })
        .collect();
    // Stretch so the background is 0 and the strongest ink 1 (identity for MNIST images).
    let background = if light { 1.0 - paper } else { paper };
    let strongest = ink.iter().cloned().fold(0.0, f32::max);
    if strongest - background < 0.1 {
        return Err("no digit found: the image is (almost) one flat colour".into());
    }
    let ink: Vec<f32> = ink
        .iter()
        .map(|&v| ((v - background) / (strongest - background)).clamp(0.0, 1.0))
        .collect();
    if (h, w) == (SIDE, SIDE) {
        return Ok((ink, light)); // already framed like MNIST
    }
    Ok((frame(&ink, h, w), light))
}

/// Frames a digit as MNIST did: crop to the ink, shrink the longer side to 20 pixels (keeping
/// the aspect ratio) and place it in 28x28 with its centre of mass at the centre.
fn frame(ink: &[f32], h: usize, w: usize) -> Vec<f32> {
    const BOX: usize = 20;
    let inked = |v: &f32| *v > 0.2;
    let rows: Vec<usize> = (0..h)
        .filter(|&r| ink[r * w..(r + 1) * w].iter().any(inked))
        .collect();
    let cols: Vec<usize> = (0..w)
        .filter(|&c| (0..h).any(|r| inked(&ink[r * w + c])))
        .collect();
    let (Some(&r0), Some(&r1), Some(&c0), Some(&c1)) =
        (rows.first(), rows.last(), cols.first(), cols.last())
    else {
        return resize_area(ink, h, w, SIDE); // unreachable after the contrast check
    };
    // Crop, then pad the short side so the square keeps the digit's aspect ratio.
    let (bh, bw) = (r1 - r0 + 1, c1 - c0 + 1);
    let side = bh.max(bw);
    let (top, left) = ((side - bh) / 2, (side - bw) / 2);
    let mut square = vec![0.0f32; side * side];
    for r in 0..bh {
        let src = &ink[(r0 + r) * w + c0..][..bw];
        square[(top + r) * side + left..][..bw].copy_from_slice(src);
    }
    let digit = resize_area(&square, side, side, BOX);
    // Centre of mass of the 20x20 digit, in pixel-centre coordinates.
    let (mut mass, mut my, mut mx) = (0.0f32, 0.0f32, 0.0f32);
    for (i, &v) in digit.iter().enumerate() {
        mass += v;
        my += v * ((i / BOX) as f32 + 0.5);
        mx += v * ((i % BOX) as f32 + 0.5);
    }
    let offset = |m: f32| {
        let centre = if mass > 0.0 {
            m / mass
        } else {
            BOX as f32 / 2.0
        };
        ((SIDE as f32 / 2.0 - centre).round().max(0.0) as usize).min(SIDE - BOX)
    };
    let (oy, ox) = (offset(my), offset(mx));
    let mut out = vec![0.0f32; SIDE * SIDE];
    for (r, row) in digit.chunks(BOX).enumerate() {
        out[(oy + r) * SIDE + ox..][..BOX].copy_from_slice(row);
    }
    out
}

/// The ASCII picture of a 28x28 image in `[0, 1]`.
fn ascii(pixels: &[f32]) -> String {
    const SHADES: &[u8] = b" .:-=+*#%@";
    pixels
        .chunks(SIDE)
        .map(|row| {
            let line: String = row
                .iter()
                .map(|&v| {
                    let i = (v.clamp(0.0, 1.0) * (SHADES.len() - 1) as f32).round() as usize;
                    let c = SHADES[i] as char;
                    format!("{c}{c}")
                })
                .collect();
            line + "\n"
        })
        .collect()
}

fn export_samples(data: &Path, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mnist = Mnist::load(data)?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (index, digit) in [(0, 7), (1, 2)] {
        let Some(&label) = mnist.test.labels().get(index) else {
            return Err(format!("{} has fewer than 2 test images", data.display()).into());
        };
        if label != digit {
            return Err(format!(
                "test image {index} of {} is a {label}, expected a {digit}: not the standard MNIST",
                data.display()
            )
            .into());
        }
        let path = dir.join(format!("digit_{digit}.png"));
        let img = GrayImage::from_raw(SIDE as u32, SIDE as u32, mnist.test.pixels(index).to_vec())
            .ok_or("MNIST test images are not 28x28")?;
        img.save(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!(
            "wrote {} (MNIST test image {index}, a {digit})",
            path.display()
        );
    }
    Ok(())
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = &args.export {
        export_samples(&args.data, dir)?;
    }
    let Some(image_path) = &args.image else {
        return Ok(());
    };
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

    let (grey, h, w) = read_grey(image_path)?;
    if h == 0 || w == 0 {
        return Err(format!("{}: the image is empty", image_path.display()).into());
    }
    let (pixels, light) =
        to_mnist(grey, h, w).map_err(|e| format!("{}: {e}", image_path.display()))?;
    println!(
        "{}: {w}x{h}, {} background{}",
        image_path.display(),
        if light { "light" } else { "dark" },
        if light { " (inverted)" } else { "" }
    );
    if args.show {
        print!("{}", ascii(&pixels));
    }
    let input = Tensor::<f32>::from_shape_vec(
        ndarray::IxDyn(&[1, 1, SIDE, SIDE]),
        pixels
            .iter()
            .map(|&v| ((v as f64 - MNIST_MEAN) / MNIST_STD) as f32)
            .collect(),
    )?;
    let logits: Vec<f64> = model.infer(&input)?.iter().map(|&v| v as f64).collect();

    // Softmax, shifted by the largest logit so exp cannot overflow.
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|&z| (z - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    let mut ranked: Vec<(usize, f64)> = exps.iter().map(|&e| e / total).enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("prediction: {}", ranked[0].0);
    for (digit, p) in ranked.iter().take(3) {
        println!("  {digit}  {:6.2}%", 100.0 * p);
    }
    if let Some(out) = &args.explain {
        write_explanation(&mut model, &input, &pixels, ranked[0].0, out)?;
    }
    Ok(())
}

/// `--explain`: the digit the network saw, its saliency map and its Grad-CAM map for `class`
/// (both blended over the digit), side by side in one PNG, each enlarged `SCALE` times.
fn write_explanation(
    model: &mut convnet::model::Sequential<f32>,
    input: &Tensor<f32>,
    pixels: &[f32],
    class: usize,
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    use convnet::explain::{grad_cam, last_spatial_layer, normalize, overlay, saliency};
    const SCALE: usize = 10;
    const GAP: usize = 4;
    let at = last_spatial_layer(model, input.shape())?;
    let salient = normalize(&saliency(model, input, class)?);
    let cam = grad_cam(model, &at, input, class)?;
    let heat = normalize(&cam.heat);
    let digit = Tensor::from_shape_vec(ndarray::IxDyn(&[1, SIDE, SIDE]), pixels.to_vec())?;
    let panels = [
        overlay(&digit, &heat, 0.0)?, // alpha 0: the digit alone
        overlay(&digit, &salient, 0.5)?,
        overlay(&digit, &heat, 0.5)?,
    ];
    let side = SIDE * SCALE;
    let width = panels.len() * side + (panels.len() - 1) * GAP;
    let mut img = image::RgbImage::from_pixel(width as u32, side as u32, image::Rgb([255; 3]));
    for (p, rgb) in panels.iter().enumerate() {
        for (y, x) in (0..side).flat_map(|y| (0..side).map(move |x| (y, x))) {
            let i = 3 * ((y / SCALE) * SIDE + x / SCALE);
            let colour = image::Rgb([rgb[i], rgb[i + 1], rgb[i + 2]]);
            img.put_pixel((p * (side + GAP) + x) as u32, y as u32, colour);
        }
    }
    img.save(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let [h, w] = [cam.coarse.shape()[0], cam.coarse.shape()[1]];
    println!(
        "wrote {}: the digit, its saliency map and Grad-CAM at layer {at} ({h}x{w} maps) for class {class}",
        path.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    common::main_with(parse_args, run)
}
