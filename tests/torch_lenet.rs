//! A LeNet-5 trained by PyTorch on MNIST (`scripts/torch_reference.py lenet`) loads unchanged
//! into `zoo::lenet5_modern` and predicts the same digit as PyTorch on all 10,000 test images.

use convnet::data::{DataLoader, LoaderConfig, Mnist, MNIST_MEAN, MNIST_STD};
use convnet::io::load_weights;
use convnet::train::predictions;
use convnet::zoo::lenet5_modern;
use convnet::{Layer, Mode};
use std::path::Path;

#[test]
fn pytorch_trained_lenet_gives_pytorchs_predictions() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root.join("data/mnist").is_dir() {
        eprintln!(
            "skipped: {} is absent (the package leaves the repository's data/ out); \
             run the tests in a git checkout",
            root.join("data/mnist").display()
        );
        return;
    }
    let mut model = lenet5_modern::<f32>(10).unwrap();
    load_weights(
        &mut model,
        &root.join("tests/fixtures/lenet5_torch_mnist.safetensors"),
    )
    .unwrap();
    model.set_mode(Mode::Eval);
    let expected =
        std::fs::read(root.join("tests/fixtures/lenet5_torch_mnist_predictions.bin")).unwrap();
    assert_eq!(expected.len(), 10_000);

    let mnist = Mnist::load(&root.join("data/mnist")).unwrap();
    let loader = DataLoader::new(
        &mnist.test,
        LoaderConfig::new(1000).normalize(MNIST_MEAN, MNIST_STD),
    )
    .unwrap();
    let mut ours = Vec::new();
    let mut correct = 0;
    for batch in loader.epoch::<f32>(0) {
        let batch = batch.unwrap();
        let pred = predictions(&model.forward(&batch.images).unwrap());
        correct += pred
            .iter()
            .zip(&batch.labels)
            .filter(|(p, l)| p == l)
            .count();
        ours.extend(pred);
    }
    let differ: Vec<usize> = (0..10_000)
        .filter(|&i| ours[i] != expected[i] as usize)
        .collect();
    assert!(
        differ.is_empty(),
        "{} predictions differ from PyTorch, first at test images {:?}",
        differ.len(),
        &differ[..differ.len().min(10)]
    );
    // The PyTorch run reported 98.49% for these weights.
    assert_eq!(correct, 9849);
}
