//! Build your own CNN from layers, print its summary, train it on MNIST and test it.
//!
//! ```text
//! cargo run --release --example custom_cnn
//! cargo run --release --example custom_cnn -- --epochs 3 --batch-size 128 --lr 0.002
//! ```
//!
//! The network is written out layer by layer in `build` below — edit it to try your own:
//!
//! ```text
//! conv 3x3, 16 filters -> batch norm -> ReLU -> max pool 2x2     [14x14x16]
//! conv 3x3, 32 filters -> batch norm -> ReLU -> max pool 2x2     [7x7x32]
//! flatten -> dropout 0.25 -> fully connected 1568 -> 10          [10]
//! ```
//!
//! Prints the summary (output shape and parameters of every layer), trains with Adam for
//! `--epochs` (default 1) on the 60,000 training images of `--data` (default `data/mnist`),
//! and ends with the accuracy on the 10,000 test images: one epoch took 40 s on two cores and
//! printed `test accuracy: 98.46% (9846/10000)`. (16 and 32 filters keep that epoch short.)

mod common;

use convnet::data::{DataLoader, LoaderConfig, Mnist, MNIST_MEAN, MNIST_STD};
use convnet::optim::{Adam, AdamConfig};
use convnet::prelude::*;
use convnet::train::Trainer;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str =
    "usage: custom_cnn [--data DIR] [--epochs N] [--batch-size N] [--lr X] [--seed N]";

/// The network: two conv blocks and a classifier, for 1x28x28 images and 10 classes.
fn build() -> Result<Sequential<f32>> {
    Ok(Sequential::new()
        .add(Conv2d::new(Conv2dConfig::new(1, 16, 3).padding(1))?) // [28x28x16]
        .add(BatchNorm2d::new(BatchNorm2dConfig::new(16))?)
        .add(ReLU::new())
        .add(MaxPool2d::new(MaxPool2dConfig::new(2))?) // [14x14x16]
        .add(Conv2d::new(Conv2dConfig::new(16, 32, 3).padding(1))?) // [14x14x32]
        .add(BatchNorm2d::new(BatchNorm2dConfig::new(32))?)
        .add(ReLU::new())
        .add(MaxPool2d::new(MaxPool2dConfig::new(2))?) // [7x7x32]
        .add(Flatten::new(FlattenConfig::new())?) // [1568]
        .add(Dropout::new(DropoutConfig::new().p(0.25))?)
        .add(Linear::new(LinearConfig::new(32 * 7 * 7, 10))?)) // [10]
}

struct Args {
    data: PathBuf,
    epochs: usize,
    batch_size: usize,
    lr: f64,
    seed: u64,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut args = Args {
        data: PathBuf::from("data/mnist"),
        epochs: 1,
        batch_size: 64,
        lr: 1e-3,
        seed: 1,
    };
    use lexopt::prelude::*;
    let fail = |e: lexopt::Error| format!("{e}\n{USAGE}");
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(fail)? {
        match arg {
            Long("help") | Short('h') => return Err(USAGE.into()),
            Long("data") => args.data = parser.value().map_err(fail)?.into(),
            Long("epochs") => args.epochs = parser.value().map_err(fail)?.parse().map_err(fail)?,
            Long("batch-size") => {
                args.batch_size = parser.value().map_err(fail)?.parse().map_err(fail)?
            }
            Long("lr") => {
                args.lr = parser.value().map_err(fail)?.parse().map_err(fail)?;
                if !(args.lr > 0.0 && args.lr.is_finite()) {
                    return Err(format!("--lr must be a positive number, got {}", args.lr));
                }
            }
            Long("seed") => args.seed = parser.value().map_err(fail)?.parse().map_err(fail)?,
            other => return Err(fail(other.unexpected())),
        }
    }
    if args.epochs == 0 {
        return Err("--epochs must be at least 1".into());
    }
    if args.batch_size == 0 {
        return Err("--batch-size must be at least 1".into());
    }
    Ok(args)
}

fn run(args: Args) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let mnist = Mnist::load(&args.data)?;

    convnet::init::manual_seed(args.seed);
    let model = build()?;
    println!("{}", model.summary(&[args.batch_size, 1, 28, 28])?);

    let train = DataLoader::new(
        &mnist.train,
        LoaderConfig::new(args.batch_size)
            .shuffle(args.seed)
            .normalize(MNIST_MEAN, MNIST_STD),
    )?;
    let test = DataLoader::new(
        &mnist.test,
        LoaderConfig::new(500).normalize(MNIST_MEAN, MNIST_STD),
    )?;
    let mut trainer = Trainer::new(model, Adam::new(AdamConfig::new(args.lr))?);
    for _ in 0..args.epochs {
        let stats = trainer.train_epoch(&train)?;
        println!(
            "epoch {}/{}: train loss {:.4} acc {:.2}% | {:.1} s ({:.0} img/s)",
            stats.epoch,
            args.epochs,
            stats.loss,
            100.0 * stats.accuracy,
            stats.seconds,
            stats.images_per_second()
        );
    }
    let eval = trainer.evaluate(&test)?;
    println!(
        "test loss {:.4}; total time {:.1} s",
        eval.loss,
        start.elapsed().as_secs_f64()
    );
    println!(
        "test accuracy: {:.2}% ({}/{})",
        100.0 * eval.top1(),
        eval.correct,
        eval.total
    );
    Ok(())
}

fn main() -> ExitCode {
    common::main_with(parse_args, run)
}
