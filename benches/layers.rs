//! Every distinct convolution of ResNet-50 (batch 8, 224x224 input), and the pooling and batch
//! norm layers of the zoo, each timed alone: `infer` and `forward` + `backward`. Throughput is
//! in FLOP/s ("elem/s"), a multiply-add counted as 2 FLOPs; a backward counts twice the
//! forward's products (input and weight gradients), and pooling and batch norm count one
//! "FLOP" per input element, so their rates read as elements per second.
//!
//! cargo bench --bench layers
//! cargo bench --bench layers -- conv      # only the convolutions; `pool`, `bn` likewise

use convnet::layers::{
    BatchNorm2d, BatchNorm2dConfig, Conv2d, Conv2dConfig, MaxPool2d, MaxPool2dConfig,
};
use convnet::{Layer, Mode, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::IxDyn;
use std::time::Duration;

const BATCH: usize = 8;

/// ResNet-50's convolutions (torchvision: stride on the 3x3), with how many times each
/// occurs: (name, in, out, kernel, stride, input side, count).
const RESNET50: [(&str, usize, usize, usize, usize, usize, usize); 23] = [
    ("conv1_7x7s2", 3, 64, 7, 2, 224, 1),
    ("l1_1x1_64-64", 64, 64, 1, 1, 56, 1),
    ("l1_3x3_64", 64, 64, 3, 1, 56, 3),
    ("l1_1x1_64-256", 64, 256, 1, 1, 56, 4),
    ("l1_1x1_256-64", 256, 64, 1, 1, 56, 2),
    ("l2_1x1_256-128", 256, 128, 1, 1, 56, 1),
    ("l2_3x3s2_128", 128, 128, 3, 2, 56, 1),
    ("l2_ds_1x1s2_256-512", 256, 512, 1, 2, 56, 1),
    ("l2_1x1_128-512", 128, 512, 1, 1, 28, 4),
    ("l2_1x1_512-128", 512, 128, 1, 1, 28, 3),
    ("l2_3x3_128", 128, 128, 3, 1, 28, 3),
    ("l3_1x1_512-256", 512, 256, 1, 1, 28, 1),
    ("l3_3x3s2_256", 256, 256, 3, 2, 28, 1),
    ("l3_ds_1x1s2_512-1024", 512, 1024, 1, 2, 28, 1),
    ("l3_1x1_256-1024", 256, 1024, 1, 1, 14, 6),
    ("l3_1x1_1024-256", 1024, 256, 1, 1, 14, 5),
    ("l3_3x3_256", 256, 256, 3, 1, 14, 5),
    ("l4_1x1_1024-512", 1024, 512, 1, 1, 14, 1),
    ("l4_3x3s2_512", 512, 512, 3, 2, 14, 1),
    ("l4_ds_1x1s2_1024-2048", 1024, 2048, 1, 2, 14, 1),
    ("l4_1x1_512-2048", 512, 2048, 1, 1, 7, 3),
    ("l4_1x1_2048-512", 2048, 512, 1, 1, 7, 2),
    ("l4_3x3_512", 512, 512, 3, 1, 7, 2),
];

fn input(shape: &[usize]) -> Tensor<f32> {
    Tensor::<f32>::from_shape_fn(IxDyn(shape), |i| {
        ((i[1] * 5 + i[2] * 3 + i[3] * 7) % 13) as f32 * 0.05 - 0.3
    })
}

fn short(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group("layers_b8");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

/// Times `infer` and `forward` + `backward` of `layer` on `x`, counting `flops` for the
/// forward and `backward_flops` for the backward.
fn time_layer(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    layer: &mut dyn Layer<f32>,
    x: &Tensor<f32>,
    flops: usize,
    backward_flops: usize,
) {
    let out = layer.output_shape(x.shape()).unwrap();
    group.throughput(Throughput::Elements(flops as u64));
    group.bench_function(BenchmarkId::new("infer", name), |b| {
        b.iter(|| layer.infer(x).unwrap())
    });
    let g = Tensor::<f32>::from_elem(IxDyn(&out), 0.01);
    group.throughput(Throughput::Elements((flops + backward_flops) as u64));
    layer.set_mode(Mode::Train);
    group.bench_function(BenchmarkId::new("forward_backward", name), |b| {
        b.iter(|| {
            layer.forward(x).unwrap();
            layer.backward(&g).unwrap()
        })
    });
}

fn conv(c: &mut Criterion) {
    let mut group = short(c);
    for (name, cin, cout, k, s, side, _count) in RESNET50 {
        let mut conv = Conv2d::<f32>::new(
            Conv2dConfig::new(cin, cout, k)
                .stride(s)
                .padding(k / 2)
                .bias(false)
                .seed(1),
        )
        .unwrap();
        let x = input(&[BATCH, cin, side, side]);
        let out = conv.output_shape(x.shape()).unwrap();
        let flops = 2 * out.iter().product::<usize>() * cin * k * k;
        time_layer(
            &mut group,
            &format!("conv_{name}"),
            &mut conv,
            &x,
            flops,
            2 * flops,
        );
    }
    group.finish();
}

fn pool(c: &mut Criterion) {
    let mut group = short(c);
    // (name, kernel, stride, padding, ceil mode, input shape)
    type Pool = (&'static str, usize, usize, usize, bool, [usize; 4]);
    let pools: [Pool; 4] = [
        ("pool_resnet_3x3s2", 3, 2, 1, false, [BATCH, 64, 112, 112]),
        ("pool_vgg_2x2s2", 2, 2, 0, false, [BATCH, 64, 224, 224]),
        (
            "pool_googlenet_3x3s2_ceil",
            3,
            2,
            0,
            true,
            [BATCH, 192, 56, 56],
        ),
        ("pool_googlenet_3x3s1", 3, 1, 1, false, [BATCH, 480, 14, 14]),
    ];
    for (name, k, s, p, ceil, shape) in pools {
        let mut layer =
            MaxPool2d::<f32>::new(MaxPool2dConfig::new(k).stride(s).padding(p).ceil_mode(ceil))
                .unwrap();
        let x = input(&shape);
        let n = x.len();
        time_layer(&mut group, name, &mut layer, &x, n, n);
    }
    group.finish();
}

fn bn(c: &mut Criterion) {
    let mut group = short(c);
    for shape in [
        [BATCH, 64, 112, 112],
        [BATCH, 256, 56, 56],
        [BATCH, 1024, 14, 14],
    ] {
        let mut layer = BatchNorm2d::<f32>::new(BatchNorm2dConfig::new(shape[1])).unwrap();
        let x = input(&shape);
        let n = x.len();
        let name = format!("bn_{}x{}x{}", shape[1], shape[2], shape[3]);
        time_layer(&mut group, &name, &mut layer, &x, n, n);
    }
    group.finish();
}

criterion_group!(benches, conv, pool, bn);
criterion_main!(benches);
