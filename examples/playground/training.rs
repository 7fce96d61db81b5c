//! First start: train LeNet-5 on the bundled MNIST, reporting every step.

use convnet::data::{DataLoader, LoaderConfig, Mnist, MNIST_MEAN, MNIST_STD};
use convnet::loss::CrossEntropyLoss;
use convnet::model::Sequential;
use convnet::optim::{Adam, AdamConfig, Optimizer};
use convnet::progress::{Progress, ProgressStyle};
use convnet::train::top_k_hits;
use convnet::zoo::lenet5_modern;
use convnet::{Layer, Mode};
use std::path::Path;
use std::time::Instant;

/// The batch size of the first-start training.
pub const BATCH: usize = 64;
/// One pass over MNIST's 60,000 training images in batches of 64.
pub const ONE_EPOCH: usize = 60_000_usize.div_ceil(BATCH);
/// The first-start training: two epochs, about 99% on the MNIST test set.
pub const DEFAULT_STEPS: usize = 2 * ONE_EPOCH;
/// Adam's starting learning rate, annealed to 0 along a cosine over the run (the `mnist`
/// example's recipe, squeezed into the run's steps).
const LR: f64 = 2e-3;

/// Where training is, for the terminal and the page.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainStatus {
    /// What is happening: "loading MNIST", "training", "evaluating", "saving".
    pub phase: String,
    /// Steps done.
    pub step: usize,
    /// Steps planned.
    pub steps: usize,
    /// Mean training loss over the steps so far.
    pub loss: f64,
    /// Training accuracy over the steps so far, in `[0, 1]`.
    pub accuracy: f64,
    /// Seconds since training started.
    pub seconds: f64,
}

/// A trained model and its accuracy on the 10,000 MNIST test images.
pub struct Trained {
    /// LeNet-5 with the trained weights.
    pub model: Sequential<f32>,
    /// Top-1 accuracy on the test set, in `[0, 1]`.
    pub test_accuracy: f64,
}

/// Why the batch loop stopped early: enough steps, or a real error.
enum Stop {
    Done,
    Failed(convnet::Error),
}

impl From<convnet::Error> for Stop {
    fn from(e: convnet::Error) -> Self {
        Stop::Failed(e)
    }
}

/// Trains LeNet-5 for `steps` batches of 64 MNIST images (random shifts of up to 2 pixels, as
/// the `mnist` example), evaluates it on the test set, and calls `report` along the way.
pub fn train(
    data: &Path,
    steps: usize,
    seed: u64,
    report: &mut dyn FnMut(&TrainStatus),
) -> Result<Trained, Box<dyn std::error::Error>> {
    let start = Instant::now();
    let mut status = TrainStatus {
        phase: "loading MNIST".into(),
        steps,
        ..TrainStatus::default()
    };
    report(&status);
    let mnist = Mnist::load(data)?;
    convnet::init::manual_seed(seed);
    let mut model = lenet5_modern::<f32>(10)?;
    model.set_mode(Mode::Train);
    let mut adam = Adam::new(AdamConfig::new(LR))?;
    let loss_fn = CrossEntropyLoss::new();
    let loader = DataLoader::new(
        &mnist.train,
        LoaderConfig::new(BATCH)
            .shuffle(seed)
            .normalize(MNIST_MEAN, MNIST_STD)
            .max_shift(2),
    )?;
    let mut progress = Progress::new("training LeNet-5", steps, ProgressStyle::Auto);
    status.phase = "training".into();
    let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
    let mut epoch = 0;
    'epochs: loop {
        let result = loader.for_each_batch::<f32, Stop>(epoch, |batch| {
            if status.step >= steps {
                return Err(Stop::Done);
            }
            let t = status.step as f64 / steps as f64;
            adam.set_lr(0.5 * LR * (1.0 + (std::f64::consts::PI * t).cos()));
            let logits = model.forward(&batch.images)?;
            let (loss, grad) = loss_fn.forward(&logits, &batch.labels)?;
            if !loss.is_finite() {
                return Err(Stop::Failed(convnet::Error::NonFinite(format!(
                    "training loss is {loss} at step {}",
                    status.step + 1
                ))));
            }
            model.zero_grad();
            model.backward(&grad)?;
            adam.step(&mut model)?;
            loss_sum += f64::from(loss);
            correct += top_k_hits(&logits, &batch.labels, 1);
            seen += batch.labels.len();
            status.step += 1;
            status.loss = loss_sum / status.step as f64;
            status.accuracy = correct as f64 / seen as f64;
            status.seconds = start.elapsed().as_secs_f64();
            progress.advance(
                1,
                &format!(
                    "loss {:.4} acc {:.2}%",
                    status.loss,
                    100.0 * status.accuracy
                ),
            );
            report(&status);
            Ok(())
        });
        match result {
            Ok(()) if status.step < steps => epoch += 1,
            Ok(()) | Err(Stop::Done) => break 'epochs,
            Err(Stop::Failed(e)) => {
                progress.finish();
                return Err(e.into());
            }
        }
    }
    progress.finish();
    status.phase = "evaluating on the 10,000 test images".into();
    report(&status);
    let test = DataLoader::new(
        &mnist.test,
        LoaderConfig::new(500).normalize(MNIST_MEAN, MNIST_STD),
    )?;
    let eval = convnet::train::evaluate(&model, &test, ProgressStyle::Off)?;
    model.set_mode(Mode::Eval);
    Ok(Trained {
        model,
        test_accuracy: eval.top1(),
    })
}
