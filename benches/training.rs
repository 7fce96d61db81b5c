//! Training throughput: one SGD step (forward, loss, backward, update) on a batch.
//!
//! cargo bench --bench training
//!
//! Throughput is reported in images per second ("elem/s").

use convnet::loss::CrossEntropyLoss;
use convnet::optim::{Optimizer, Sgd, SgdConfig};
use convnet::zoo;
use convnet::{Layer, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::IxDyn;

fn step_bench(
    c: &mut Criterion,
    name: &str,
    model: &mut dyn Layer<f32>,
    input: [usize; 4],
    samples: usize,
) {
    let x = Tensor::<f32>::from_shape_fn(IxDyn(&input), |i| {
        ((i[1] * 7 + i[2] * 3 + i[3]) % 11) as f32 * 0.1 - 0.5
    });
    let labels: Vec<usize> = (0..input[0]).map(|i| i % 10).collect();
    let loss = CrossEntropyLoss::new();
    let mut opt = Sgd::new(SgdConfig::new(0.01).momentum(0.9)).unwrap();
    let mut group = c.benchmark_group("train_step");
    group.sample_size(samples);
    group.throughput(Throughput::Elements(input[0] as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            let logits = model.forward(&x).unwrap();
            let (_, grad) = loss.forward(&logits, &labels).unwrap();
            model.zero_grad();
            model.backward(&grad).unwrap();
            opt.step(model).unwrap();
        })
    });
    group.finish();
}

fn lenet(c: &mut Criterion) {
    let mut model = zoo::lenet5_modern::<f32>(10).unwrap();
    step_bench(
        c,
        "lenet5_modern_b64_28x28",
        &mut model,
        [64, 1, 28, 28],
        50,
    );
}

fn resnet50(c: &mut Criterion) {
    let mut model = zoo::resnet50::<f32>(1000).unwrap();
    step_bench(c, "resnet50_b8_224x224", &mut model, [8, 3, 224, 224], 10);
}

criterion_group!(benches, lenet, resnet50);
criterion_main!(benches);
