//! LeNet-5 on one drawn digit: prediction, feature maps with their geometry, saliency.

use convnet::data::{MNIST_MEAN, MNIST_STD};
use convnet::explain::{normalize, saliency};
use convnet::model::Sequential;
use convnet::{Layer, Mode, Tensor};
use ndarray::IxDyn;
use serde_json::{json, Value};

/// MNIST's side: the page sends `SIDE * SIDE` pixels.
pub const SIDE: usize = 28;

/// A conv or pool layer of `lenet5_modern` whose feature maps the page shows.
#[derive(Clone, Copy, Debug)]
pub struct Stage {
    /// The course's label.
    pub label: &'static str,
    /// What it does, for the page.
    pub about: &'static str,
    /// The index of the layer in the `Sequential`.
    pub layer: usize,
    /// The index whose output is shown: the ReLU right after a convolution (what the next
    /// layer reads), or the pool itself.
    pub shown: usize,
    /// Window size `F`.
    pub kernel: usize,
    /// Padding `P` on each side.
    pub padding: usize,
    /// Stride `S`.
    pub stride: usize,
}

/// The geometry of `convnet::zoo::lenet5_modern`, layer by layer; [`check_geometry`] holds it
/// against the model's own shapes.
pub const STAGES: [Stage; 5] = [
    Stage {
        label: "CONV1",
        about: "6 filters 5x5, pad 2, then ReLU",
        layer: 0,
        shown: 1,
        kernel: 5,
        padding: 2,
        stride: 1,
    },
    Stage {
        label: "POOL1",
        about: "max 2x2, stride 2",
        layer: 2,
        shown: 2,
        kernel: 2,
        padding: 0,
        stride: 2,
    },
    Stage {
        label: "CONV2",
        about: "16 filters 5x5, then ReLU",
        layer: 3,
        shown: 4,
        kernel: 5,
        padding: 0,
        stride: 1,
    },
    Stage {
        label: "POOL2",
        about: "max 2x2, stride 2",
        layer: 5,
        shown: 5,
        kernel: 2,
        padding: 0,
        stride: 2,
    },
    Stage {
        label: "CONV3",
        about: "120 filters 5x5, then ReLU",
        layer: 6,
        shown: 7,
        kernel: 5,
        padding: 0,
        stride: 1,
    },
];

/// The course formula with the numbers in: `O = (28 - 5 + 2·2)/1 + 1 = 28`, and `O`.
pub fn formula(n: usize, stage: &Stage) -> (String, usize) {
    let (f, p, s) = (stage.kernel, stage.padding, stage.stride);
    let o = (n + 2 * p - f) / s + 1;
    (format!("O = ({n} - {f} + 2·{p})/{s} + 1 = {o}"), o)
}

/// Checks [`STAGES`] against the model: each stage's formula gives the height and width its
/// layer really outputs, for a 28x28 input. An error names the first stage that disagrees.
pub fn check_geometry(model: &Sequential<f32>) -> Result<(), String> {
    let mut shape = vec![1, 1, SIDE, SIDE];
    let layers = model.layers();
    for (i, layer) in layers.iter().enumerate() {
        let input = shape.clone();
        shape = layer.output_shape(&input).map_err(|e| e.to_string())?;
        if let Some(stage) = STAGES.iter().find(|s| s.layer == i) {
            let (_, o) = formula(input[2], stage);
            if shape.len() != 4 || shape[2] != o || shape[3] != o {
                return Err(format!(
                    "{} (layer {i}, {}): the formula gives {o}x{o}, the model outputs {shape:?}",
                    stage.label,
                    layer.describe()
                ));
            }
        }
    }
    Ok(())
}

/// The trained LeNet-5 and where it came from.
pub struct Net {
    model: Sequential<f32>,
    /// Where the weights came from, for the page.
    pub source: String,
    /// The test accuracy, when the playground trained the model itself.
    pub test_accuracy: Option<f64>,
}

impl Net {
    /// Wraps a trained `lenet5_modern` (checking its geometry).
    pub fn new(
        mut model: Sequential<f32>,
        source: String,
        test_accuracy: Option<f64>,
    ) -> Result<Self, String> {
        check_geometry(&model)?;
        model.set_mode(Mode::Eval);
        Ok(Net {
            model,
            source,
            test_accuracy,
        })
    }

    /// Everything the page shows for one 28x28 digit (values in `[0, 1]`, white on black, as
    /// MNIST): normalised as in training, run layer by layer, explained for the top class.
    pub fn analyse(&mut self, pixels: &[f32]) -> convnet::Result<Value> {
        if pixels.len() != SIDE * SIDE {
            return Err(convnet::Error::input(
                "playground",
                format!("expected {} pixels, got {}", SIDE * SIDE, pixels.len()),
            ));
        }
        let (mean, std) = (MNIST_MEAN as f32, MNIST_STD as f32);
        let normalised: Vec<f32> = pixels.iter().map(|&v| (v - mean) / std).collect();
        let image = Tensor::from_shape_vec(IxDyn(&[1, 1, SIDE, SIDE]), normalised)?;

        self.model.set_mode(Mode::Eval);
        let mut outputs = Vec::new();
        let mut x = image.clone();
        for layer in self.model.layers() {
            x = layer.infer(&x)?;
            outputs.push(x.clone());
        }
        let logits: Vec<f32> = x.iter().copied().collect();
        let probabilities = softmax(&logits);
        let prediction = probabilities
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);

        let mut side = SIDE;
        let mut layers = Vec::new();
        for stage in &STAGES {
            let maps = &outputs[stage.shown];
            let (formula, o) = formula(side, stage);
            let shape = maps.shape();
            layers.push(json!({
                "label": stage.label,
                "about": stage.about,
                "input": side,
                "formula": formula,
                "shape": [shape[1], shape[2], shape[3]],
                "course_shape": convnet::summary::course_shape(shape),
                "maps": rounded(maps.iter().copied()),
            }));
            side = o;
        }

        let heat = normalize(&saliency(&mut self.model, &image, prediction)?);
        Ok(json!({
            "prediction": prediction,
            "probabilities": probabilities,
            "input": rounded(pixels.iter().copied()),
            "layers": layers,
            "saliency": rounded(heat.iter().copied()),
        }))
    }
}

/// Softmax of the logits, computed stably.
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&z| f64::from(z - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.iter().map(|e| e / sum).collect()
}

/// Values rounded to 4 decimals, to keep the JSON short.
fn rounded(values: impl Iterator<Item = f32>) -> Vec<f32> {
    values.map(|v| (v * 1e4).round() / 1e4).collect()
}
