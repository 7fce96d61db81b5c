//! A first CNN in a few lines: learn to tell horizontal bars, vertical bars and crosses apart.
//!
//! ```text
//! cargo run --release --example shapes
//! ```
//!
//! The images are 12x12 and generated on the fly (a bar or a cross at a random position, plus
//! noise), so the example needs no data files. It builds a two-conv-layer network, trains it
//! with SGD + momentum on cross-entropy, and prints the loss and accuracy per epoch.

use convnet::loss::CrossEntropyLoss;
use convnet::optim::{Optimizer, Sgd, SgdConfig};
use convnet::prelude::*;
use ndarray::{s, Array4};

const SIDE: usize = 12;
const CLASSES: [&str; 3] = ["horizontal", "vertical", "cross"];

/// A batch of `n` labelled images drawn from `rng`.
fn make_batch(n: usize, rng: &mut Rng64) -> (Tensor<f32>, Vec<usize>) {
    let mut images = Array4::<f32>::zeros((n, 1, SIDE, SIDE));
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = rng.below(3);
        let (row, col) = (2 + rng.below(SIDE - 4), 2 + rng.below(SIDE - 4));
        let mut img = images.slice_mut(s![i, 0, .., ..]);
        img.mapv_inplace(|_| 0.3 * (rng.uniform() as f32 - 0.5));
        if class != 1 {
            img.slice_mut(s![row, 1..SIDE - 1])
                .mapv_inplace(|v| v + 1.0);
        }
        if class != 0 {
            img.slice_mut(s![1..SIDE - 1, col])
                .mapv_inplace(|v| v + 1.0);
        }
        labels.push(class);
    }
    (images.into_dyn(), labels)
}

fn accuracy(logits: &Tensor<f32>, labels: &[usize]) -> f64 {
    let classes = logits.shape()[1];
    let flat = logits.as_standard_layout();
    let rows = flat.as_slice().expect("standard layout").chunks(classes);
    let correct = rows
        .zip(labels)
        .filter(|(row, &y)| {
            let best = (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            best == y
        })
        .count();
    correct as f64 / labels.len() as f64
}

fn main() -> convnet::Result<()> {
    convnet::init::manual_seed(1);
    let mut net = Sequential::<f32>::new()
        .add(Conv2d::new(Conv2dConfig::new(1, 8, 3).padding(1))?) // [12x12x8]
        .add(ReLU::new())
        .add(MaxPool2d::new(MaxPool2dConfig::new(2))?) // [6x6x8]
        .add(Conv2d::new(Conv2dConfig::new(8, 16, 3).padding(1))?) // [6x6x16]
        .add(ReLU::new())
        .add(MaxPool2d::new(MaxPool2dConfig::new(2))?) // [3x3x16]
        .add(Flatten::new(FlattenConfig::new())?)
        .add(Linear::new(LinearConfig::new(16 * 3 * 3, 3))?);
    println!(
        "network: {} parameters, output shape {:?} for a batch of 32",
        net.num_params(),
        net.output_shape(&[32, 1, SIDE, SIDE])?
    );

    let loss_fn = CrossEntropyLoss::new();
    let mut opt = Sgd::new(SgdConfig::new(0.05).momentum(0.9))?;
    let mut rng = Rng64::seed(7);
    let (test_x, test_y) = make_batch(600, &mut rng);

    for epoch in 1..=5 {
        net.set_mode(Mode::Train);
        let mut total = 0.0;
        for _ in 0..40 {
            let (x, y) = make_batch(32, &mut rng);
            let logits = net.forward(&x)?;
            let (loss, grad) = loss_fn.forward(&logits, &y)?;
            net.zero_grad();
            net.backward(&grad)?;
            opt.step(&mut net)?;
            total += loss as f64;
        }
        net.set_mode(Mode::Eval);
        let acc = accuracy(&net.forward(&test_x)?, &test_y);
        println!(
            "epoch {epoch}: train loss {:.4}, test accuracy {:.1}%",
            total / 40.0,
            100.0 * acc
        );
    }

    let (x, y) = make_batch(3, &mut rng);
    let logits = net.forward(&x)?;
    for (i, &label) in y.iter().enumerate() {
        let row = logits.slice(s![i, ..]);
        let guess = (0..3)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap_or(0);
        println!(
            "sample {i}: a {} is predicted {}",
            CLASSES[label], CLASSES[guess]
        );
    }
    Ok(())
}
