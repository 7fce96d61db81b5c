//! Convolution forward and forward+backward on AlexNet's five conv layers (the course listing),
//! batch 8, f32. Throughput is in FLOP/s ("elem/s"), counting a multiply-add as 2 FLOPs.
//!
//! cargo bench --bench conv

use convnet::layers::{Conv2d, Conv2dConfig};
use convnet::{Layer, Tensor};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::IxDyn;

/// (name, in, out, kernel, stride, pad, input side)
const ALEXNET: [(&str, usize, usize, usize, usize, usize, usize); 5] = [
    ("conv1", 3, 96, 11, 4, 0, 227),
    ("conv2", 96, 256, 5, 1, 2, 27),
    ("conv3", 256, 384, 3, 1, 1, 13),
    ("conv4", 384, 384, 3, 1, 1, 13),
    ("conv5", 384, 256, 3, 1, 1, 13),
];

fn bench(c: &mut Criterion) {
    let batch = 8;
    let mut group = c.benchmark_group("alexnet_conv_b8");
    group.sample_size(10);
    for (name, cin, cout, k, s, p, side) in ALEXNET {
        let mut conv =
            Conv2d::<f32>::new(Conv2dConfig::new(cin, cout, k).stride(s).padding(p).seed(1))
                .unwrap();
        let x = Tensor::<f32>::from_shape_fn(IxDyn(&[batch, cin, side, side]), |i| {
            ((i[1] + i[2] * 3 + i[3] * 7) % 13) as f32 * 0.05
        });
        let out = conv.output_shape(x.shape()).unwrap();
        let flops = 2 * out.iter().product::<usize>() * cin * k * k;
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| conv.forward(&x).unwrap())
        });
        let g = Tensor::<f32>::from_elem(IxDyn(&out), 0.01);
        // Backward costs two products of the forward's size (weight and input gradients).
        group.throughput(Throughput::Elements(3 * flops as u64));
        group.bench_function(BenchmarkId::new("forward_backward", name), |b| {
            b.iter(|| {
                conv.forward(&x).unwrap();
                conv.backward(&g).unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
