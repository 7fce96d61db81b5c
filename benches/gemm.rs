//! GEMM: convnet's kernel (the `gemm` crate behind a safe wrapper) against ndarray's safe
//! `general_mat_mul` (matrixmultiply). This is the benchmark that justifies the one `unsafe`
//! block in `src/kernels/gemm.rs`.
//!
//! cargo bench --bench gemm

use convnet::kernels::gemm::{gemm, Op, Threads};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use ndarray::linalg::general_mat_mul;
use ndarray::Array2;
use std::hint::black_box;

/// Fixed pseudo-random operands `A [m x k]` and `B [k x n]`.
fn operands(m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>) {
    let a = (0..m * k).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect();
    let b = (0..k * n).map(|i| ((i % 13) as f32 - 6.0) * 0.01).collect();
    (a, b)
}

/// Times convnet's `C = A · B` (`A [m x k]`, `B [k x n]`) with `threads`.
fn time_convnet(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    (m, n, k): (usize, usize, usize),
    (a, b): (&[f32], &[f32]),
    threads: Threads,
) {
    group.bench_function(id, |bench| {
        let mut c = vec![0f32; m * n];
        bench.iter(|| {
            gemm(
                m,
                n,
                k,
                black_box(a),
                Op::N,
                black_box(b),
                Op::N,
                &mut c,
                false,
                threads,
            )
        });
    });
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_f32");
    // (m, n, k): AlexNet CONV2 per image [256, 27*27, 96*25], a ResNet 3x3 layer, a square.
    for &(m, n, k) in &[
        (256usize, 729usize, 2400usize),
        (128, 784, 1152),
        (512, 512, 512),
    ] {
        let (a, b) = operands(m, n, k);
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        let label = format!("{m}x{n}x{k}");
        let id = BenchmarkId::new("convnet", &label);
        time_convnet(&mut group, id, (m, n, k), (&a, &b), Threads::Pool);
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
    let (a, b) = operands(n, n, n);
    group.throughput(Throughput::Elements((2 * n * n * n) as u64));
    for (label, threads) in [("pool", Threads::Pool), ("one_thread", Threads::Single)] {
        let id = BenchmarkId::new(label, format!("{n}x{n}x{n}"));
        time_convnet(&mut group, id, (n, n, n), (&a, &b), threads);
    }
    group.finish();
}

/// ResNet-50's 1x1 convolutions as one image's product on one thread (how `Conv2d` runs them
/// at 56x56 and 28x28, an image per thread), in both orientations: channels as rows (NCHW:
/// `Y[C_out, HW] = W[C_out, C_in] · X[C_in, HW]`) and pixels as rows (what an NHWC layout
/// would compute: `Y[HW, C_out] = X[HW, C_in] · Wᵀ[C_in, C_out]`).
fn orientation(c: &mut Criterion) {
    let mut group = c.benchmark_group("gemm_orientation_f32");
    for &(cout, hw, cin) in &[
        (64usize, 3136usize, 256usize),
        (256, 3136, 64),
        (128, 784, 512),
        (512, 784, 128),
    ] {
        group.throughput(Throughput::Elements((2 * cout * hw * cin) as u64));
        for (layout, (m, n, k)) in [("nchw", (cout, hw, cin)), ("nhwc", (hw, cout, cin))] {
            let (a, b) = operands(m, n, k);
            let id = BenchmarkId::new(layout, format!("{cin}to{cout}_{hw}px"));
            time_convnet(&mut group, id, (m, n, k), (&a, &b), Threads::Single);
        }
    }
    group.finish();
}

criterion_group!(benches, bench, peak, orientation);
criterion_main!(benches);
