//! Classify an image with a zoo model: a photo with an ImageNet model, or a handwritten digit
//! with a LeNet-5 trained by the `mnist` example.
//!
//! ```text
//! cargo run --release --example predict -- --model resnet50 --weights resnet50.safetensors photo.jpg
//! cargo run --release --example predict -- --model resnet18 --weights resnet18-f37072fd.pth photo.png
//! cargo run --release --example mnist              # once: writes out/mnist/lenet5_mnist.safetensors
//! cargo run --release --example predict -- examples/data/digit_7.png
//! cargo run --release --example predict -- my_digit.png --weights out/mnist/lenet5_mnist.safetensors --show
//! cargo run --release --example predict -- --export-samples examples/data
//! ```
//!
//! **Photos** (any model with 3 input channels; weights as `.safetensors` or a `.pth` written
//! by `torch.save`): JPEG or PNG, preprocessed exactly as torchvision's ImageNet evaluation
//! transform — `Resize(256)`, `CenterCrop(224)` (the model's input side), `ToTensor`,
//! `Normalize(ImageNet mean, std)` — then the top 5 classes, one line each: rank, softmax
//! probability, class index, class name (torchvision's 1,000 ImageNet names, or `--labels
//! FILE` with one name per line):
//!
//! ```text
//! photo.jpg: 500x375 RGB, resnet50, input [1, 3, 224, 224]
//! 1. 0.8712 258 Samoyed
//! 2. 0.0311 259 Pomeranian
//! ...
//! ```
//!
//! Without `--weights` it says where torchvision's weights are and how to convert them.
//! `--save-input x.safetensors` writes the preprocessed `[1, C, H, W]` tensor, named `input`
//! (as `zoo forward` reads it), so that it can be compared with torchvision's.
//!
//! **Digits** (`--model lenet5_modern`, the default, or `lenet5`): prints the three most likely
//! digits with their softmax probabilities:
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
//! centre of mass in the middle. Finally it is normalised with the MNIST mean and std (and
//! padded with background to 32x32 for the classic `lenet5`). `--show` prints the 28x28 the
//! network sees.
//!
//! `--explain OUT.png` (any model: a photo with alexnet*, vgg*, googlenet*, resnet*, or a digit)
//! also writes what the network looked at for its answer, as one PNG of three panels side by
//! side: the input as the network saw it (a photo resized and centre-cropped, a digit framed
//! and enlarged), then its saliency map and its Grad-CAM map for the predicted class (or
//! `--class N`) blended over it. Grad-CAM looks at `--layer NAME`, a dotted path such as
//! `layer4`, `layer3.1.conv2`, `features.28` or `inception4e`, by default the last feature maps
//! before the classifier (`layer4` in a ResNet, `features` in a VGG or AlexNet, `inception5b`
//! in a GoogLeNet, the second pool in LeNet-5). An unknown layer (the message lists the names
//! there are), a class the model does not have or a file that is not an image is an error.
//!
//! ```text
//! cargo run --release --example predict -- --model resnet18 --weights resnet18.safetensors \
//!     photo.jpg --explain explained.png [--layer layer3] [--class 258]
//! ```
//!
//! `--export-samples DIR` writes `digit_7.png` and `digit_2.png` to DIR: test images 0 and 1
//! of the MNIST in `--data` (default `data/mnist`), exactly as stored (28x28 grey, white digit
//! on black). These are the samples shipped in `examples/data/`.

mod common;

use convnet::data::{Mnist, MNIST_MEAN, MNIST_STD};
use convnet::io::{load_pth_weights, load_weights, write_tensors};
use convnet::rng::Rng64;
use convnet::vision::transforms::{CenterCrop, Compose, Normalize, Resize, ToTensor};
use convnet::vision::{decode_file, imagenet_classes};
use convnet::zoo::{self, ModelInfo};
use convnet::{Layer, Tensor};
use image::GrayImage;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "usage: predict [--model NAME] [--weights FILE] [--weights-key KEY] \
[--classes N] [--labels FILE] [--top K] [--save-input X.safetensors] [--show] \
[--explain OUT.png [--layer NAME] [--class N]] IMAGE\n       \
predict --export-samples DIR [--data DIR]\n\
NAME is a zoo model (`zoo list`), lenet5_modern by default.";

/// The LeNet-5 the `mnist` example trains, used when no model is named.
const DEFAULT_MODEL: &str = "lenet5_modern";
/// Where the `mnist` example writes its weights.
const MNIST_WEIGHTS: &str = "out/mnist/lenet5_mnist.safetensors";
/// torchvision's evaluation resize: the shorter side becomes 256 before the centre crop.
const RESIZE: usize = 256;
/// The side of an MNIST digit.
const SIDE: usize = 28;

struct Args {
    image: Option<PathBuf>,
    model: String,
    weights: Option<PathBuf>,
    weights_key: Option<String>,
    classes: Option<usize>,
    labels: Option<PathBuf>,
    top: Option<usize>,
    save_input: Option<PathBuf>,
    show: bool,
    export: Option<PathBuf>,
    data: PathBuf,
    explain: Option<PathBuf>,
    layer: Option<String>,
    class: Option<usize>,
}

fn parse_args() -> Result<Args, String> {
    use lexopt::prelude::*;
    let fail = |e: lexopt::Error| format!("{e}\n{USAGE}");
    let mut args = Args {
        image: None,
        model: DEFAULT_MODEL.into(),
        weights: None,
        weights_key: None,
        classes: None,
        labels: None,
        top: None,
        save_input: None,
        show: false,
        export: None,
        data: PathBuf::from("data/mnist"),
        explain: None,
        layer: None,
        class: None,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(fail)? {
        let positive = |v: usize, flag: &str| {
            if v == 0 {
                Err(format!("{flag} must be at least 1"))
            } else {
                Ok(v)
            }
        };
        match arg {
            Long("help") | Short('h') => return Err(USAGE.into()),
            Long("show") => args.show = true,
            Long("model") => args.model = parser.value().map_err(fail)?.string().map_err(fail)?,
            Long("weights") => args.weights = Some(parser.value().map_err(fail)?.into()),
            Long("weights-key") => {
                args.weights_key = Some(parser.value().map_err(fail)?.string().map_err(fail)?)
            }
            Long("classes") => {
                let n = parser.value().map_err(fail)?.parse().map_err(fail)?;
                args.classes = Some(positive(n, "--classes")?);
            }
            Long("labels") => args.labels = Some(parser.value().map_err(fail)?.into()),
            Long("top") => {
                let k = parser.value().map_err(fail)?.parse().map_err(fail)?;
                args.top = Some(positive(k, "--top")?);
            }
            Long("save-input") => args.save_input = Some(parser.value().map_err(fail)?.into()),
            Long("export-samples") => args.export = Some(parser.value().map_err(fail)?.into()),
            Long("data") => args.data = parser.value().map_err(fail)?.into(),
            Long("explain") => args.explain = Some(parser.value().map_err(fail)?.into()),
            Long("layer") => {
                args.layer = Some(parser.value().map_err(fail)?.string().map_err(fail)?)
            }
            Long("class") => {
                args.class = Some(parser.value().map_err(fail)?.parse().map_err(fail)?)
            }
            Value(v) if args.image.is_none() => args.image = Some(v.into()),
            Value(v) => {
                return Err(format!(
                    "only one image, please (got a second: `{}`)\n{USAGE}",
                    v.to_string_lossy()
                ))
            }
            other => return Err(fail(other.unexpected())),
        }
    }
    if args.image.is_none() && args.export.is_none() {
        return Err(format!("no image given\n{USAGE}"));
    }
    if args.explain.is_none() && (args.layer.is_some() || args.class.is_some()) {
        return Err(format!("--layer and --class go with --explain\n{USAGE}"));
    }
    Ok(args)
}

// ---------------------------------------------------------------------------------------------
// What the model reads

/// The two kinds of input the zoo's models take.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Task {
    /// One grey channel: an MNIST-style digit (the LeNet-5s).
    Digit,
    /// Three channels: an ImageNet-style photo.
    Photo,
}

fn task(info: &ModelInfo) -> Task {
    if info.input[0] == 1 {
        Task::Digit
    } else {
        Task::Photo
    }
}

/// A preprocessed image: the `[1, C, H, W]` batch the model reads and a one-line description
/// of where it came from.
struct Prepared {
    input: Tensor<f32>,
    about: String,
    /// The input as the network sees it before normalisation, `[C, H, W]` in [0, 1]: the
    /// resized and cropped photo, or the framed digit (padded to the model's side).
    shown: Tensor<f32>,
}

/// torchvision's ImageNet evaluation transform for a model reading `crop x crop` inputs:
/// `Resize(256)`, `CenterCrop(crop)`, `ToTensor()`, `Normalize(IMAGENET_MEAN, IMAGENET_STD)`.
fn imagenet_preprocess(crop: usize) -> Compose {
    Compose::new()
        .then(Resize::new(RESIZE))
        .then(CenterCrop::new(crop))
        .then(ToTensor)
        .then(Normalize::imagenet())
}

/// Decodes a JPEG or PNG and preprocesses it for an ImageNet model.
fn prepare_photo(path: &Path, info: &ModelInfo) -> Result<Prepared, Box<dyn std::error::Error>> {
    let image = decode_file(path)?;
    let (w, h) = (image.width(), image.height());
    let crop = info.input[1];
    let shown = Compose::new()
        .then(Resize::new(RESIZE))
        .then(CenterCrop::new(crop))
        .then(ToTensor)
        .tensor(image.clone(), &mut Rng64::seed(0))?;
    let x = imagenet_preprocess(crop).tensor(image, &mut Rng64::seed(0))?;
    let mut shape = vec![1];
    shape.extend_from_slice(x.shape());
    let input = x.into_shape_with_order(ndarray::IxDyn(&shape))?;
    Ok(Prepared {
        about: format!(
            "{}: {w}x{h} RGB, {}, input {shape:?}",
            path.display(),
            info.name
        ),
        input,
        shown,
    })
}

/// Reads a digit image and makes the input of a LeNet-5 whose input side is `side` (28, or
/// 32 for the classic LeNet-5: the 28x28 digit padded with background).
fn prepare_digit(
    path: &Path,
    side: usize,
    show: bool,
) -> Result<Prepared, Box<dyn std::error::Error>> {
    let (grey, h, w) = read_grey(path)?;
    if h == 0 || w == 0 {
        return Err(format!("{}: the image is empty", path.display()).into());
    }
    let (pixels, light) = to_mnist(grey, h, w).map_err(|e| format!("{}: {e}", path.display()))?;
    let about = format!(
        "{}: {w}x{h}, {} background{}",
        path.display(),
        if light { "light" } else { "dark" },
        if light { " (inverted)" } else { "" }
    );
    if show {
        // Printed after the description line, as before the `--model` rewrite.
        println!("{about}");
        print!("{}", ascii(&pixels));
    }
    let pad = side.saturating_sub(SIDE) / 2;
    let background = (-MNIST_MEAN / MNIST_STD) as f32;
    let mut input = Tensor::<f32>::from_elem(ndarray::IxDyn(&[1, 1, side, side]), background);
    let mut shown = Tensor::<f32>::zeros(ndarray::IxDyn(&[1, side, side]));
    for (r, row) in pixels.chunks(SIDE).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            input[[0, 0, r + pad, c + pad]] = ((v as f64 - MNIST_MEAN) / MNIST_STD) as f32;
            shown[[0, r + pad, c + pad]] = v;
        }
    }
    Ok(Prepared {
        input,
        about: if show { String::new() } else { about },
        shown,
    })
}

/// Writes the preprocessed batch as the tensor `input` of a safetensors file.
fn save_input(path: &Path, input: &Tensor<f32>) -> convnet::Result<()> {
    write_tensors(path, &[("input".to_string(), input.clone())], None)
}

// ---------------------------------------------------------------------------------------------
// The model and its weights

/// torchvision's ImageNet-1k weights (`IMAGENET1K_V1`) for the zoo models that match a
/// torchvision model exactly.
fn torchvision_url(model: &str) -> Option<&'static str> {
    Some(match model {
        "resnet18" => "https://download.pytorch.org/models/resnet18-f37072fd.pth",
        "resnet34" => "https://download.pytorch.org/models/resnet34-b627a593.pth",
        "resnet50" => "https://download.pytorch.org/models/resnet50-0676ba61.pth",
        "resnet101" => "https://download.pytorch.org/models/resnet101-63fe2227.pth",
        "resnet152" => "https://download.pytorch.org/models/resnet152-394f9c45.pth",
        "alexnet_torchvision" => "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "vgg11" => "https://download.pytorch.org/models/vgg11-8a719046.pth",
        "vgg11_bn" => "https://download.pytorch.org/models/vgg11_bn-6002323d.pth",
        "vgg13" => "https://download.pytorch.org/models/vgg13-19584684.pth",
        "vgg13_bn" => "https://download.pytorch.org/models/vgg13_bn-abd245e5.pth",
        "vgg16" => "https://download.pytorch.org/models/vgg16-397923af.pth",
        "vgg16_bn" => "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
        "vgg19" => "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
        "vgg19_bn" => "https://download.pytorch.org/models/vgg19_bn-c79401a0.pth",
        _ => return None,
    })
}

/// What to do when no weights were given.
fn weights_hint(model: &str) -> String {
    if model == DEFAULT_MODEL {
        return format!(
            "weights file {MNIST_WEIGHTS} not found: run `cargo run --release --example mnist` \
             first to train LeNet-5 and write it, or pass --weights FILE"
        );
    }
    match torchvision_url(model) {
        Some(url) => format!(
            "{model} needs weights: --weights FILE (.safetensors or .pth). torchvision's \
             ImageNet weights are at\n  {url}\nwhich loads as it is (`--weights {file}`), or \
             convert them to safetensors with PyTorch and torchvision installed:\n  \
             python scripts/torchvision_weights.py {model} {model}.safetensors",
            file = url.rsplit('/').next().unwrap_or(url)
        ),
        None => format!(
            "{model} needs weights: --weights FILE (.safetensors or .pth with torchvision's \
             names). No published weights match convnet's {model} exactly; those with \
             torchvision weights are resnet18/34/50/101/152, vgg11/13/16/19 (and _bn) and \
             alexnet_torchvision"
        ),
    }
}

/// The weights file to load: `--weights`, or for the default LeNet-5 the one the `mnist`
/// example writes, if it exists.
fn weights_path(args: &Args) -> Option<PathBuf> {
    match &args.weights {
        Some(w) => Some(w.clone()),
        None if args.model == DEFAULT_MODEL => {
            Some(PathBuf::from(MNIST_WEIGHTS)).filter(|p| p.is_file())
        }
        None => None,
    }
}

/// Builds the zoo model (with its natural number of classes unless `--classes`) and loads
/// its weights.
fn load_model(
    args: &Args,
    info: &ModelInfo,
    weights: &Path,
) -> convnet::Result<Box<dyn Layer<f32>>> {
    let mut model = zoo::build::<f32>(info.name, args.classes.unwrap_or(info.classes))?;
    match &args.weights_key {
        Some(key) => load_pth_weights(&mut model, weights, Some(key))?,
        None => load_weights(&mut model, weights)?,
    }
    Ok(model)
}

// ---------------------------------------------------------------------------------------------
// Classification

/// Softmax of the logits, in f64, shifted by the largest logit so that exp cannot overflow.
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .map(|&z| z as f64)
        .fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|&z| (z as f64 - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| e / total).collect()
}

/// The `k` most likely classes, most likely first: `(class index, probability)`. Equal
/// probabilities keep the lower index first (a stable sort).
fn top_k(probabilities: &[f64], k: usize) -> Vec<(usize, f64)> {
    let mut ranked: Vec<(usize, f64)> = probabilities.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    ranked
}

/// Class names for a model with `classes` outputs: `--labels FILE` (one per line), else
/// torchvision's ImageNet names for 1,000 outputs, else none.
fn class_names(labels: Option<&Path>, classes: usize) -> Result<Vec<String>, String> {
    let names: Vec<String> = match labels {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .lines()
            .map(str::to_string)
            .collect(),
        None if classes == 1000 => imagenet_classes().into_iter().map(String::from).collect(),
        None => return Ok(Vec::new()),
    };
    if names.len() != classes {
        return Err(format!(
            "{} class names for a model with {classes} outputs",
            names.len()
        ));
    }
    Ok(names)
}

/// The photo report: `1. 0.8712 258 Samoyed`, one line per class (rank, probability, class
/// index, name; no name when there are none).
fn top_lines(ranked: &[(usize, f64)], names: &[String]) -> Vec<String> {
    ranked
        .iter()
        .enumerate()
        .map(|(rank, &(class, p))| match names.get(class) {
            Some(name) => format!("{}. {p:.4} {class} {name}", rank + 1),
            None => format!("{}. {p:.4} {class}", rank + 1),
        })
        .collect()
}

/// The digit report, as the example has always printed it.
fn print_digits(ranked: &[(usize, f64)]) {
    if let Some((digit, _)) = ranked.first() {
        println!("prediction: {digit}");
    }
    for (digit, p) in ranked {
        println!("  {digit}  {:6.2}%", 100.0 * p);
    }
}

// ---------------------------------------------------------------------------------------------
// Digits: MNIST-style framing

/// Reads a PNG as grey values in `[0, 1]`, compositing any transparency over white.
fn read_grey(path: &Path) -> Result<(Vec<f32>, usize, usize), String> {
    let open = || {
        image::ImageReader::open(path)
            .and_then(|r| r.with_guessed_format())
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    // A small PNG can declare billions of pixels: refuse more than the library decodes.
    let (w, h) = open()?
        .into_dimensions()
        .map_err(|e| format!("{}: not a readable image ({e})", path.display()))?;
    if u64::from(w) * u64::from(h) > convnet::vision::MAX_PIXELS as u64 {
        return Err(format!(
            "{}: {w}x{h} pixels are more than the limit of {}",
            path.display(),
            convnet::vision::MAX_PIXELS
        ));
    }
    let img = open()?
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

// ---------------------------------------------------------------------------------------------

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = &args.export {
        export_samples(&args.data, dir)?;
    }
    let Some(image_path) = &args.image else {
        return Ok(());
    };
    let info = zoo::info(&args.model)?;
    let task = task(&info);
    let weights = weights_path(&args);
    // Without weights (and nothing else asked), say how to get them before any work.
    if weights.is_none() && args.save_input.is_none() {
        return Err(weights_hint(&args.model).into());
    }

    let prepared = match task {
        Task::Photo => prepare_photo(image_path, &info)?,
        Task::Digit => prepare_digit(image_path, info.input[1], args.show)?,
    };
    if !prepared.about.is_empty() {
        println!("{}", prepared.about);
    }
    if let Some(path) = &args.save_input {
        save_input(path, &prepared.input)?;
        println!(
            "preprocessed input {:?} written to {} (tensor `input`)",
            prepared.input.shape(),
            path.display()
        );
    }
    let Some(weights) = weights else {
        eprintln!("not classified: {}", weights_hint(&args.model));
        return Ok(());
    };

    let mut model = load_model(&args, &info, &weights)?;
    let logits: Vec<f32> = model.infer(&prepared.input)?.iter().copied().collect();
    let probabilities = softmax(&logits);
    let names = match task {
        Task::Digit => {
            print_digits(&top_k(&probabilities, args.top.unwrap_or(3)));
            Vec::new()
        }
        Task::Photo => {
            let names = class_names(args.labels.as_deref(), logits.len())?;
            for line in top_lines(&top_k(&probabilities, args.top.unwrap_or(5)), &names) {
                println!("{line}");
            }
            names
        }
    };
    if let Some(out) = &args.explain {
        let class = match args.class {
            Some(c) => c,
            None => top_k(&probabilities, 1).first().map_or(0, |&(c, _)| c),
        };
        let explained = explain(model.as_mut(), &prepared, class, args.layer.as_deref(), out)?;
        let name = names
            .get(class)
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        println!("{explained} for class {class}{name}");
    }
    Ok(())
}

/// `--explain`: the input as the network saw it, its saliency map and its Grad-CAM map (at
/// `layer`, or [`default_layer`]) for `class`, both blended over the input, side by side in
/// one PNG; small inputs (digits) are enlarged to about 280 pixels. Returns what was written.
fn explain(
    model: &mut dyn Layer<f32>,
    prepared: &Prepared,
    class: usize,
    layer: Option<&str>,
    path: &Path,
) -> convnet::Result<String> {
    use convnet::explain::{default_layer, grad_cam, normalize, overlay, saliency};
    const GAP: usize = 4;
    let at = match layer {
        Some(name) => name.to_string(),
        None => default_layer(model, &prepared.input)?,
    };
    let cam = grad_cam(model, &at, &prepared.input, class)?;
    let salient = normalize(&saliency(model, &prepared.input, class)?);
    let heat = normalize(&cam.heat);
    let shown = &prepared.shown;
    let panels = [
        overlay(shown, &heat, 0.0)?, // alpha 0: the input alone
        overlay(shown, &salient, 0.5)?,
        overlay(shown, &heat, 0.5)?,
    ];
    let [h, w] = [shown.shape()[1], shown.shape()[2]];
    let scale = (280 / h.max(w)).max(1);
    let (ph, pw) = (h * scale, w * scale);
    let width = panels.len() * pw + (panels.len() - 1) * GAP;
    let mut img = image::RgbImage::from_pixel(width as u32, ph as u32, image::Rgb([255; 3]));
    for (p, rgb) in panels.iter().enumerate() {
        for (y, x) in (0..ph).flat_map(|y| (0..pw).map(move |x| (y, x))) {
            let i = 3 * ((y / scale) * w + x / scale);
            let colour = image::Rgb([rgb[i], rgb[i + 1], rgb[i + 2]]);
            img.put_pixel((p * (pw + GAP) + x) as u32, y as u32, colour);
        }
    }
    img.save(path).map_err(|e| convnet::Error::File {
        path: path.to_path_buf(),
        message: format!("cannot write the PNG: {e}"),
    })?;
    let [ch, cw] = [cam.coarse.shape()[0], cam.coarse.shape()[1]];
    Ok(format!(
        "wrote {}: the {w}x{h} input, its saliency map and Grad-CAM at layer `{at}` ({ch}x{cw} maps, {} channels)",
        path.display(),
        cam.weights.len()
    ))
}

fn main() -> ExitCode {
    common::main_with(parse_args, run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_have_rank_probability_index_and_name() {
        let names = class_names(None, 1000).unwrap();
        let lines = top_lines(&[(258, 0.87123), (259, 0.03114)], &names);
        assert_eq!(lines, ["1. 0.8712 258 Samoyed", "2. 0.0311 259 Pomeranian"]);
        assert_eq!(top_lines(&[(3, 0.5)], &[]), ["1. 0.5000 3"]);
        assert!(class_names(None, 10).unwrap().is_empty());
    }

    #[test]
    fn softmax_and_top_k() {
        // Shifted logits give the same probabilities; exp(1000) would overflow unshifted.
        let p = softmax(&[1000.0, 1000.0 + 2f32.ln(), 1000.0]);
        assert!(
            (p[0] - 0.25).abs() < 1e-4 && (p[1] - 0.5).abs() < 1e-4,
            "{p:?}"
        );
        assert_eq!(p[0], p[2]);
        assert_eq!(top_k(&p, 2), vec![(1, p[1]), (0, p[0])]); // tie: the lower index first
        assert_eq!(top_k(&p, 9).len(), 3);
    }

    #[test]
    fn missing_weights_say_where_to_get_them() {
        let hint = weights_hint("resnet50");
        assert!(hint.contains("https://download.pytorch.org/models/resnet50-0676ba61.pth"));
        assert!(hint.contains("scripts/torchvision_weights.py resnet50"));
        assert!(weights_hint("googlenet").contains("No published weights"));
        assert!(weights_hint(DEFAULT_MODEL).contains("--example mnist"));
    }

    /// `--explain` on a digit (LeNet-5 with its initial weights) and on a photo (ResNet-18 for
    /// 10 classes): three panels side by side, the digit enlarged; bad requests are typed
    /// errors.
    #[test]
    fn explain_writes_three_panels_and_rejects_bad_requests() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = std::env::temp_dir().join(format!("predict_explain_{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();

        let digit = prepare_digit(&root.join("examples/data/digit_7.png"), 28, false).unwrap();
        let mut lenet = zoo::build::<f32>("lenet5_modern", 10).unwrap();
        let said = explain(lenet.as_mut(), &digit, 7, None, &out.join("d.png")).unwrap();
        assert!(said.contains("layer `5` (5x5 maps, 16 channels)"), "{said}");
        let png = image::open(out.join("d.png")).unwrap();
        assert_eq!((png.width(), png.height()), (3 * 280 + 2 * 4, 280));

        let info = zoo::info("resnet18").unwrap();
        let photo = prepare_photo(&root.join("tests/fixtures/vision/photo.png"), &info).unwrap();
        assert_eq!(photo.shown.shape(), &[3, 224, 224]);
        let mut resnet = zoo::build::<f32>("resnet18", 10).unwrap();
        let said = explain(
            resnet.as_mut(),
            &photo,
            3,
            Some("layer3"),
            &out.join("p.png"),
        )
        .unwrap();
        assert!(
            said.contains("layer `layer3` (14x14 maps, 256 channels)"),
            "{said}"
        );
        let png = image::open(out.join("p.png")).unwrap();
        assert_eq!((png.width(), png.height()), (3 * 224 + 2 * 4, 224));

        let p = out.join("x.png");
        for (layer, class, needle) in [
            (Some("layer9"), 3, "no layer named `layer9`"),
            (Some("layer3.7"), 3, "no `7` there (`layer3` holds 0, 1)"),
            (None, 10, "class 10 does not exist"),
        ] {
            let err = explain(resnet.as_mut(), &photo, class, layer, &p).unwrap_err();
            assert!(matches!(err, convnet::Error::InvalidInput { .. }), "{err}");
            assert!(err.to_string().contains(needle), "{err}");
        }
        let not_an_image = root.join("Cargo.toml");
        let err = match prepare_photo(&not_an_image, &info) {
            Err(e) => e,
            Ok(_) => panic!("Cargo.toml decoded as a photo"),
        };
        assert!(
            matches!(
                err.downcast_ref::<convnet::Error>(),
                Some(convnet::Error::File { .. })
            ),
            "{err}"
        );
        std::fs::remove_dir_all(&out).unwrap();
    }

    /// predict's preprocessing against torchvision's (PIL Resize(256), CenterCrop(224),
    /// ToTensor, Normalize) on the PNG fixture of scripts/make_vision_fixtures.py: every
    /// 7th row and column of the output is stored there.
    #[test]
    fn photo_input_matches_torchvision_on_the_png_fixture() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vision");
        let info = zoo::info("resnet50").unwrap();
        let prepared = prepare_photo(&dir.join("photo.png"), &info).unwrap();
        assert_eq!(prepared.input.shape(), &[1, 3, 224, 224]);
        let expected = convnet::io::read_tensors::<f32>(&dir.join("photo_png.safetensors"))
            .unwrap()
            .into_iter()
            .find(|(n, _)| n == "sub")
            .unwrap()
            .1;
        let mut max_diff = 0f32;
        for c in 0..3 {
            for i in 0..32 {
                for j in 0..32 {
                    let ours = prepared.input[[0, c, 7 * i, 7 * j]];
                    max_diff = max_diff.max((ours - expected[[c, i, j]]).abs());
                }
            }
        }
        assert!(max_diff < 1e-5, "max |diff| {max_diff}");
    }
}
