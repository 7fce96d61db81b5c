//! GEMM: convnet's kernel (the `gemm` crate behind a safe wrapper) against ndarray's safe
//! `general_mat_mul` (matrixmultiply). This is the benchmark that justifies the one `unsafe`
//! block in `src/kernels/gemm.rs`.
//!
//! cargo bench --bench gemm

use convnet::kernels::gemm::{gemm, Op, Threads};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::linalg::general_mat_mul;
use ndarray::Array2;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_f32");
    // (m, n, k): AlexNet CONV2 per image [256, 27*27, 96*25], a ResNet 3x3 layer, a square.
    for &(m, n, k) in &[
        (256usize, 729usize, 2400usize),
        (128, 784, 1152),
        (512, 512, 512),
    ] {
        let a: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        let label = format!("{m}x{n}x{k}");
        group.bench_function(BenchmarkId::new("convnet", &label), |bench| {
            let mut c = vec![0f32; m * n];
            bench.iter(|| {
                gemm(
                    m,
                    n,
                    k,
                    black_box(&a),
                    Op::N,
                    black_box(&b),
                    Op::N,
                    &mut c,
                    false,
                    Threads::Pool,
                )
            });
        });
        let aa = Array2::from_shape_vec((m, k), a.clone()).unwrap();
        let bb = Array2::from_shape_vec((k, n), b.clone()).unwrap();
        group.bench_function(
            BenchmarkId::new("ndarray_matrixmultiply", &label),
            |bench| {
                let mut cc = Array2::<f32>::zeros((m, n));
                bench.iter(|| general_mat_mul(1.0, black_box(&aa), black_box(&bb), 0.0, &mut cc));
            },
        );
    }
    group.finish();
}

/// The most this machine's GEMM reaches: a 1024x1024x1024 product on the whole pool and on one
/// thread (the reference for the per-layer rates of `cargo bench --bench layers`).
fn peak(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_peak_f32");
    group.sample_size(10);
    let n = 1024;
    let a: Vec<f32> = (0..n * n).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect();
    let b: Vec<f32> = (0..n * n).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
    group.throughput(Throughput::Elements((2 * n * n * n) as u64));
    for (label, threads) in [("pool", Threads::Pool), ("one_thread", Threads::Single)] {
        group.bench_function(BenchmarkId::new(label, format!("{n}x{n}x{n}")), |bench| {
            let mut c = vec![0f32; n * n];
            bench.iter(|| {
                gemm(
                    n,
                    n,
                    n,
                    black_box(&a),
                    Op::N,
                    black_box(&b),
                    Op::N,
                    &mut c,
                    false,
                    threads,
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench, peak);
criterion_main!(benches);
