//! The training loop on real MNIST data: learning, NaN detection and exact checkpoint resume.

use convnet::data::{DataLoader, ImageSet, LoaderConfig, Mnist, MNIST_MEAN, MNIST_STD};
use convnet::io::state_dict;
use convnet::optim::{Adam, AdamConfig, CosineAnnealing, Sgd, SgdConfig};
use convnet::prelude::*;
use convnet::progress::ProgressStyle;
use convnet::train::Trainer;
use std::path::Path;
use std::sync::OnceLock;

/// The repository's MNIST, or `None` (with a message) where it is absent: the published
/// package leaves `data/` out, so these tests skip there.
fn mnist() -> Option<&'static Mnist> {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist");
    if !dir.is_dir() {
        eprintln!(
            "skipped: {} is absent (the package leaves the repository's data/ out); \
             run the tests in a git checkout to train on MNIST",
            dir.display()
        );
        return None;
    }
    Some(DATA.get_or_init(|| Mnist::load(&dir).unwrap()))
}

/// A small CNN with dropout, so that resuming must also restore a random generator.
fn small_cnn(seed: u64) -> Sequential<f32> {
    Sequential::new()
        .add(Conv2d::new(Conv2dConfig::new(1, 8, 5).stride(2).padding(2).seed(seed)).unwrap()) // 14x14
        .add(ReLU::new())
        .add(MaxPool2d::new(MaxPool2dConfig::new(2)).unwrap()) // 7x7
        .add(Flatten::new(FlattenConfig::new()).unwrap())
        .add(Dropout::new(DropoutConfig::new().p(0.25).seed(seed)).unwrap())
        .add(Linear::new(LinearConfig::new(8 * 7 * 7, 10).seed(seed + 1)).unwrap())
}

fn loader(data: &ImageSet, batch: usize) -> DataLoader<'_, ImageSet> {
    DataLoader::new(
        data,
        LoaderConfig::new(batch)
            .shuffle(3)
            .normalize(MNIST_MEAN, MNIST_STD)
            .max_shift(1),
    )
    .unwrap()
}

#[test]
fn one_epoch_on_2000_images_learns_far_above_chance() {
    let Some(mnist) = mnist() else { return };
    let train = mnist.train.take(2000);
    let test = mnist.test.take(1000);
    let mut trainer = Trainer::new(small_cnn(1), Adam::new(AdamConfig::new(3e-3)).unwrap())
        .with_progress(ProgressStyle::Off);
    let stats = trainer.train_epoch(&loader(&train, 32)).unwrap();
    assert_eq!(stats.images, 2000);
    let eval = trainer
        .evaluate(
            &DataLoader::new(
                &test,
                LoaderConfig::new(250).normalize(MNIST_MEAN, MNIST_STD),
            )
            .unwrap(),
        )
        .unwrap();
    assert_eq!(eval.total, 1000);
    assert_eq!(eval.confusion.iter().flatten().sum::<usize>(), 1000);
    // Chance is 10%; a working conv net is several times better after 63 steps.
    assert!(eval.top1() > 0.7, "top-1 {}", eval.top1());
    assert!(eval.top5() >= eval.top1());
}

#[test]
fn resuming_from_a_checkpoint_gives_the_uninterrupted_weights() {
    let Some(mnist) = mnist() else { return };
    let train = mnist.train.take(600);
    let data = loader(&train, 50);
    let new_trainer = || {
        Trainer::new(small_cnn(5), Adam::new(AdamConfig::new(1e-3)).unwrap())
            .with_schedule(CosineAnnealing::new(3, 0.0).unwrap())
            .with_progress(ProgressStyle::Off)
    };
    let mut straight = new_trainer();
    for _ in 0..3 {
        straight.train_epoch(&data).unwrap();
    }

    let dir = std::env::temp_dir().join(format!("convnet-resume-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("ckpt.safetensors");
    let mut first = new_trainer();
    first.train_epoch(&data).unwrap();
    first.save_checkpoint(&ckpt).unwrap();
    drop(first);

    // A fresh process would build the model from another seed: the checkpoint must override it.
    let mut resumed = Trainer::new(small_cnn(77), Adam::new(AdamConfig::new(1e-3)).unwrap())
        .with_schedule(CosineAnnealing::new(3, 0.0).unwrap())
        .with_progress(ProgressStyle::Off);
    resumed.load_checkpoint(&ckpt).unwrap();
    assert_eq!(resumed.epoch(), 1);
    while resumed.epoch() < 3 {
        resumed.train_epoch(&data).unwrap();
    }
    assert_eq!(state_dict(&straight.model), state_dict(&resumed.model));

    // A checkpoint from another optimizer is refused with a clear message.
    let mut sgd = Trainer::new(small_cnn(5), Sgd::new(SgdConfig::new(0.1)).unwrap());
    let msg = sgd.load_checkpoint(&ckpt).unwrap_err().to_string();
    assert!(msg.contains("Adam") && msg.contains("SGD"), "{msg}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_diverging_loss_is_reported_with_its_step() {
    let Some(mnist) = mnist() else { return };
    let train = mnist.train.take(256);
    let data = loader(&train, 32);
    let mut trainer = Trainer::new(small_cnn(2), Sgd::new(SgdConfig::new(1e9)).unwrap())
        .with_progress(ProgressStyle::Off);
    match trainer.train_epoch(&data) {
        Err(Error::NonFinite(msg)) => assert!(msg.contains("epoch 1, batch"), "{msg}"),
        other => panic!("expected a non-finite loss error, got {other:?}"),
    }
}

/// `small_cnn` without its dropout, so that one model and its replicas compute the same thing.
fn small_cnn_deterministic(seed: u64) -> Sequential<f32> {
    Sequential::new()
        .add(Conv2d::new(Conv2dConfig::new(1, 8, 5).stride(2).padding(2).seed(seed)).unwrap())
        .add(ReLU::new())
        .add(MaxPool2d::new(MaxPool2dConfig::new(2)).unwrap())
        .add(Flatten::new(FlattenConfig::new()).unwrap())
        .add(Linear::new(LinearConfig::new(8 * 7 * 7, 10).seed(seed + 1)).unwrap())
}

#[test]
fn replicas_train_as_one_model_and_resume_exactly() {
    use convnet::model::Replicated;
    let Some(mnist) = mnist() else { return };
    let train = mnist.train.take(600);
    let data = loader(&train, 50);

    // Three replicas on shares of 17, 17 and 16 images follow the single model's Adam steps
    // (the gradients differ only in the order of their sums).
    let mut single = Trainer::new(
        small_cnn_deterministic(3),
        Adam::new(AdamConfig::new(1e-3)).unwrap(),
    )
    .with_progress(ProgressStyle::Off);
    let replicated = Replicated::new(3, || Ok(small_cnn_deterministic(3))).unwrap();
    let mut split = Trainer::new(replicated, Adam::new(AdamConfig::new(1e-3)).unwrap())
        .with_progress(ProgressStyle::Off);
    let a = single.train_epoch(&data).unwrap();
    let b = split.train_epoch(&data).unwrap();
    assert!(
        (a.loss - b.loss).abs() < 1e-4 * a.loss.abs(),
        "{} vs {}",
        a.loss,
        b.loss
    );
    let (one, many) = (state_dict(&single.model), state_dict(&split.model));
    assert_eq!(one.len(), many.len());
    for ((name, x), (name2, y)) in one.iter().zip(&many) {
        assert_eq!(name, name2);
        let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = x.iter().zip(y).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(diff <= 1e-4 * scale, "{name}: {diff} (scale {scale})");
    }

    // With dropout, replicas draw their masks from generators forked from replica 0's, which
    // the checkpoint keeps: a resumed run repeats the uninterrupted one exactly.
    let new_trainer = |seed| {
        let replicated = Replicated::new(2, || Ok(small_cnn(seed))).unwrap();
        Trainer::new(replicated, Adam::new(AdamConfig::new(1e-3)).unwrap())
            .with_progress(ProgressStyle::Off)
    };
    let mut straight = new_trainer(5);
    straight.train_epoch(&data).unwrap();
    straight.train_epoch(&data).unwrap();
    let dir = std::env::temp_dir().join(format!("convnet-replicas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("ckpt.safetensors");
    let mut first = new_trainer(5);
    first.train_epoch(&data).unwrap();
    first.save_checkpoint(&ckpt).unwrap();
    let mut resumed = new_trainer(77);
    resumed.load_checkpoint(&ckpt).unwrap();
    resumed.train_epoch(&data).unwrap();
    assert_eq!(state_dict(&straight.model), state_dict(&resumed.model));
    std::fs::remove_dir_all(&dir).ok();
}
