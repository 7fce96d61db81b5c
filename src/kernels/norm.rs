//! Per-channel loops of batch normalisation over NCHW data, parallel over channels or planes.
//!
//! A tensor `[N, C, H, W]` is `N·C` contiguous planes of `H·W` values; plane `p` belongs to
//! channel `p % C`. Sums use eight independent accumulators so that they vectorise.

use crate::parallel::prelude::*;
use crate::tensor::Float;

/// `Σ f(a[i], b[i])` with eight accumulators (vectorisable, unlike a single running sum).
#[inline]
pub(crate) fn lane_sum<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    let mut acc = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += f(xa[k], xb[k]);
        }
    }
    let mut s = acc.iter().fold(T::zero(), |s, &v| s + v);
    for (&x, &y) in ra.iter().zip(rb) {
        s += f(x, y);
    }
    s
}

/// For every channel, `Σ f(a, b)` over its `N` planes of `hw` values each.
fn channel_sums<T: Float>(
    a: &[T],
    b: &[T],
    [n, c, hw]: [usize; 3],
    f: impl Fn(usize, T, T) -> T + Sync,
) -> Vec<T> {
    assert!(
        a.len() == n * c * hw && b.len() == a.len(),
        "channel_sums: lengths"
    );
    (0..c)
        .into_par_iter()
        .map(|ch| {
            (0..n)
                .map(|i| {
                    let p = (i * c + ch) * hw;
                    lane_sum(&a[p..p + hw], &b[p..p + hw], |x, y| f(ch, x, y))
                })
                .fold(T::zero(), |s, v| s + v)
        })
        .collect()
}

/// Per-channel mean and biased variance (two passes: mean, then mean of squared deviations).
pub fn mean_var<T: Float>(x: &[T], dims: [usize; 3]) -> (Vec<T>, Vec<T>) {
    let m = T::of((dims[0] * dims[2]) as f64);
    let mean: Vec<T> = channel_sums(x, x, dims, |_, v, _| v)
        .into_iter()
        .map(|s| s / m)
        .collect();
    let var = channel_sums(x, x, dims, |ch, v, _| (v - mean[ch]) * (v - mean[ch]))
        .into_iter()
        .map(|s| s / m)
        .collect();
    (mean, var)
}

/// Per-channel `(Σ dy, Σ dy·x̂)`.
pub fn sum_and_dot<T: Float>(dy: &[T], xhat: &[T], dims: [usize; 3]) -> (Vec<T>, Vec<T>) {
    let sum = channel_sums(dy, dy, dims, |_, g, _| g);
    let dot = channel_sums(dy, xhat, dims, |_, g, h| g * h);
    (sum, dot)
}

/// `1 / sqrt(var + eps)` per channel.
pub fn inverse_std<T: Float>(var: &[T], eps: f64) -> Vec<T> {
    var.iter()
        .map(|&v| T::one() / (v + T::of(eps)).sqrt())
        .collect()
}

/// The input gradient of batch normalisation, `dx = a·dy + b·x̂ + k` per channel with
/// `a = weight·istd`. With batch statistics, `batch = Some((Σdy, Σdy·x̂, m))` over the `m`
/// values the statistics were taken from, and the terms through `μ` and `σ²` are
/// `b = -a·Σdy·x̂ / m`, `k = -a·Σdy / m`; with running statistics (`None`) both are zero.
/// [`BatchNorm2d`](crate::layers::BatchNorm2d) passes its own sums,
/// `SyncBatchNorm2d` the all-reduced shares of every process's sums.
pub fn batch_norm_input_grad<T: Float>(
    dy: &[T],
    xhat: &[T],
    weight: &[T],
    istd: &[T],
    batch: Option<(&[T], &[T], T)>,
    hw: usize,
) -> Vec<T> {
    let c = weight.len();
    let a: Vec<T> = weight.iter().zip(istd).map(|(&w, &s)| w * s).collect();
    let (b, k): (Vec<T>, Vec<T>) = match batch {
        Some((sum_dy, sum_dy_xhat, m)) => a
            .iter()
            .zip(sum_dy.iter().zip(sum_dy_xhat))
            .map(|(&a, (&s, &d))| (-a * d / m, -a * s / m))
            .unzip(),
        None => (vec![T::zero(); c], vec![T::zero(); c]),
    };
    let mut dx = vec![T::zero(); dy.len()];
    affine_grad(dy, xhat, &a, &b, &k, c, hw, &mut dx);
    dx
}

/// Forward: `x̂ = (x - mean)·istd` and `y = weight·x̂ + bias`, plane by plane.
#[allow(clippy::too_many_arguments)]
pub fn normalize<T: Float>(
    x: &[T],
    mean: &[T],
    istd: &[T],
    weight: &[T],
    bias: &[T],
    c: usize,
    hw: usize,
    xhat: &mut [T],
    y: &mut [T],
) {
    assert!(
        xhat.len() == x.len() && y.len() == x.len() && x.len() % (c * hw).max(1) == 0,
        "normalize: lengths"
    );
    if hw == 0 {
        return;
    }
    x.par_chunks(hw)
        .zip(xhat.par_chunks_mut(hw))
        .zip(y.par_chunks_mut(hw))
        .enumerate()
        .for_each(|(p, ((x, xh), y))| {
            let ch = p % c;
            let (m, s, w, b) = (mean[ch], istd[ch], weight[ch], bias[ch]);
            for ((&v, h), o) in x.iter().zip(xh.iter_mut()).zip(y.iter_mut()) {
                *h = (v - m) * s;
                *o = w * *h + b;
            }
        });
}

/// Backward, as one per-channel affine map: `dx = a[ch]·dy + b[ch]·x̂ + k[ch]`.
#[allow(clippy::too_many_arguments)]
pub fn affine_grad<T: Float>(
    dy: &[T],
    xhat: &[T],
    a: &[T],
    b: &[T],
    k: &[T],
    c: usize,
    hw: usize,
    dx: &mut [T],
) {
    assert!(
        xhat.len() == dy.len() && dx.len() == dy.len(),
        "affine_grad: lengths"
    );
    if hw == 0 {
        return;
    }
    dy.par_chunks(hw)
        .zip(xhat.par_chunks(hw))
        .zip(dx.par_chunks_mut(hw))
        .enumerate()
        .for_each(|(p, ((dy, xh), dx))| {
            let ch = p % c;
            let (a, b, k) = (a[ch], b[ch], k[ch]);
            for ((&g, &h), o) in dy.iter().zip(xh).zip(dx.iter_mut()) {
                *o = a * g + b * h + k;
            }
        });
}

/// Inference: `y = weight·((x - mean)·istd) + bias` plane by plane, the arithmetic of
/// [`normalize`] without keeping `x̂`.
#[allow(clippy::too_many_arguments)]
pub fn normalize_output<T: Float>(
    x: &[T],
    mean: &[T],
    istd: &[T],
    weight: &[T],
    bias: &[T],
    c: usize,
    hw: usize,
    y: &mut [T],
) {
    assert!(
        y.len() == x.len() && x.len() % (c * hw).max(1) == 0,
        "normalize_output: lengths"
    );
    if hw == 0 {
        return;
    }
    x.par_chunks(hw)
        .zip(y.par_chunks_mut(hw))
        .enumerate()
        .for_each(|(p, (x, y))| {
            let ch = p % c;
            let (m, s, w, b) = (mean[ch], istd[ch], weight[ch], bias[ch]);
            for (&v, o) in x.iter().zip(y.iter_mut()) {
                *o = w * ((v - m) * s) + b;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_match_a_plain_loop() {
        let (n, c, hw) = (3, 4, 13);
        let x: Vec<f64> = (0..n * c * hw)
            .map(|i| ((i * 37) % 101) as f64 * 0.1 - 3.0)
            .collect();
        let (mean, var) = mean_var(&x, [n, c, hw]);
        for ch in 0..c {
            let vals: Vec<f64> = (0..n)
                .flat_map(|i| x[(i * c + ch) * hw..(i * c + ch + 1) * hw].to_vec())
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|x| (x - m).powi(2)).sum::<f64>() / vals.len() as f64;
            assert!((mean[ch] - m).abs() < 1e-12 && (var[ch] - v).abs() < 1e-12);
        }
        let (s, d) = sum_and_dot(&x, &x, [n, c, hw]);
        for ch in 0..c {
            let vals: Vec<f64> = (0..n)
                .flat_map(|i| x[(i * c + ch) * hw..(i * c + ch + 1) * hw].to_vec())
                .collect();
            assert!((s[ch] - vals.iter().sum::<f64>()).abs() < 1e-10);
            assert!((d[ch] - vals.iter().map(|v| v * v).sum::<f64>()).abs() < 1e-9);
        }
    }

    #[test]
    fn normalize_and_affine_grad_apply_per_channel_values() {
        let (c, hw) = (2, 3);
        let x = [
            1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 4.0, 5.0, 6.0, 40.0, 50.0, 60.0,
        ];
        let (mut xhat, mut y) = ([0.0; 12], [0.0; 12]);
        normalize(
            &x,
            &[1.0, 10.0],
            &[2.0, 0.5],
            &[3.0, 1.0],
            &[1.0, -1.0],
            c,
            hw,
            &mut xhat,
            &mut y,
        );
        assert_eq!(xhat[..3], [0.0, 2.0, 4.0]);
        assert_eq!(y[3..6], [-1.0, 4.0, 9.0]);
        assert_eq!(xhat[9], 15.0);
        let mut y2 = [0.0; 12];
        normalize_output(
            &x,
            &[1.0, 10.0],
            &[2.0, 0.5],
            &[3.0, 1.0],
            &[1.0, -1.0],
            c,
            hw,
            &mut y2,
        );
        assert_eq!(y, y2);
        let mut dx = [0.0; 12];
        affine_grad(
            &x,
            &xhat,
            &[1.0, 2.0],
            &[0.0, 1.0],
            &[0.5, 0.0],
            c,
            hw,
            &mut dx,
        );
        assert_eq!(dx[0], 1.5);
        assert_eq!(dx[3], 20.0 + 0.0);
        assert_eq!(dx[9], 80.0 + 15.0);
    }
}
