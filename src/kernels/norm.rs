//! Per-channel loops of batch normalisation over NCHW data, parallel over channels or planes.
//!
//! A tensor `[N, C, H, W]` is `N·C` contiguous planes of `H·W` values; plane `p` belongs to
//! channel `p % C`. Sums use eight independent accumulators so that they vectorise.
//!
//! The training loops of [`BatchNorm2d`](crate::layers::BatchNorm2d) ([`train_forward`],
//! [`normalize_new`], [`train_backward_in_place`]) run one task per channel: a channel's
//! planes are read for its statistics and read again, from cache, for its output, and every
//! sum is taken in a fixed order inside one task, so results do not depend on the number of
//! threads. Their loops run through [`vectorized`] (AVX2 where the CPU has it); without FMA
//! contraction in Rust, the numbers are the same as the baseline code's.

use super::simd::vectorized;
use crate::parallel::prelude::*;
use crate::tensor::Float;

/// `Σ f(a[i], b[i])` with eight accumulators (vectorisable, unlike a single running sum).
#[inline(always)]
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

/// `(Σ f(a[i], b[i]), Σ g(a[i], b[i]))` in one pass, each with the eight accumulators of
/// [`lane_sum`] (so each result is bit-identical to its own `lane_sum`).
#[inline(always)]
fn lane_sum2<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T, g: impl Fn(T, T) -> T) -> (T, T) {
    let (mut acc_f, mut acc_g) = ([T::zero(); 8], [T::zero(); 8]);
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (xa, xb) in ca.zip(cb) {
        for k in 0..8 {
            acc_f[k] += f(xa[k], xb[k]);
            acc_g[k] += g(xa[k], xb[k]);
        }
    }
    let mut sf = acc_f.iter().fold(T::zero(), |s, &v| s + v);
    let mut sg = acc_g.iter().fold(T::zero(), |s, &v| s + v);
    for (&x, &y) in ra.iter().zip(rb) {
        sf += f(x, y);
        sg += g(x, y);
    }
    (sf, sg)
}

/// The planes of one channel: the `n` planes `i·C + ch` of an `[N, C, hw]` slice.
#[inline(always)]
fn channel_planes<T>(x: &[T], [n, c, hw]: [usize; 3], ch: usize) -> impl Iterator<Item = &[T]> {
    (0..n).map(move |i| &x[(i * c + ch) * hw..(i * c + ch + 1) * hw])
}

/// The mutable planes of `buf` (`[N, C, hw]`) grouped by channel: entry `ch` holds the `N`
/// planes of channel `ch`, image by image, so that one task can own a channel.
fn planes_by_channel<U>(buf: &mut [U], [n, c, hw]: [usize; 3]) -> Vec<Vec<&mut [U]>> {
    let mut groups: Vec<Vec<&mut [U]>> = (0..c).map(|_| Vec::with_capacity(n)).collect();
    for (p, plane) in buf.chunks_mut(hw).enumerate() {
        groups[p % c].push(plane);
    }
    groups
}

/// Per-channel statistics of a training forward.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchStats<T> {
    /// Mean of each channel.
    pub mean: Vec<T>,
    /// Biased variance of each channel.
    pub var: Vec<T>,
    /// `1 / sqrt(var + eps)`.
    pub istd: Vec<T>,
}

/// A fresh `[N, C, hw]` vector written by `fill`, one channel per task: `fill(ch, planes)`
/// receives the `N` output planes of channel `ch` and must write each with [`write_plane`]
/// (the only way to reach them), or the task panics. The vector starts zeroed (a large one
/// comes from `calloc`, i.e. pages the kernel zeroes on first touch anyway); writing into
/// uninitialised memory instead would need `unsafe`, which no benchmark has shown to pay.
fn collect_by_channel<T: Float>(
    [n, c, hw]: [usize; 3],
    fill: impl Fn(usize, &mut [PlaneOut<'_, T>]) + Sync,
) -> Vec<T> {
    let mut y = vec![T::zero(); n * c * hw];
    let groups = planes_by_channel(&mut y, [n, c, hw]);
    groups.into_par_iter().enumerate().for_each(|(ch, planes)| {
        let mut outs: Vec<PlaneOut<'_, T>> = planes.into_iter().map(PlaneOut).collect();
        fill(ch, &mut outs);
        for out in &outs {
            assert!(
                out.0.is_empty(),
                "collect_by_channel: a plane was not written"
            );
        }
    });
    y
}

/// An output plane not written yet (see [`collect_by_channel`]).
struct PlaneOut<'a, T>(&'a mut [T]);

/// Writes `out[i] = f(a[i])` for the whole plane (which must have `a`'s length) and marks it
/// written.
#[inline(always)]
fn write_plane<T: Float>(out: &mut PlaneOut<'_, T>, a: &[T], f: impl Fn(T) -> T) {
    let plane = std::mem::take(&mut out.0);
    assert_eq!(plane.len(), a.len(), "write_plane: lengths");
    for (o, &v) in plane.iter_mut().zip(a) {
        *o = f(v);
    }
}

/// Training forward with batch statistics, one task per channel: the mean, the biased
/// variance (two passes over the channel, as [`mean_var`]), `istd = 1 / sqrt(var + eps)`, and
/// `y = weight·((x - mean)·istd) + bias` written into a fresh vector.
/// Needs `N·hw > 0` values per channel (the layer asks for more than one).
///
/// # Panics
/// If `x` is not `N·C·hw` long or `weight`/`bias` are not `C` long.
pub fn train_forward<T: Float>(
    x: &[T],
    dims: [usize; 3],
    eps: f64,
    weight: &[T],
    bias: &[T],
) -> (BatchStats<T>, Vec<T>) {
    let [n, c, hw] = dims;
    assert!(
        x.len() == n * c * hw && weight.len() == c && bias.len() == c && hw > 0,
        "train_forward: lengths"
    );
    let m = T::of((n * hw) as f64);
    let stats: Vec<(T, T, T)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            vectorized(
                #[inline(always)]
                || {
                    let mean = channel_planes(x, dims, ch)
                        .map(|p| lane_sum(p, p, |v, _| v))
                        .fold(T::zero(), |s, v| s + v)
                        / m;
                    let var = channel_planes(x, dims, ch)
                        .map(|p| lane_sum(p, p, |v, _| (v - mean) * (v - mean)))
                        .fold(T::zero(), |s, v| s + v)
                        / m;
                    (mean, var, T::one() / (var + T::of(eps)).sqrt())
                },
            )
        })
        .collect();
    let mean: Vec<T> = stats.iter().map(|s| s.0).collect();
    let istd: Vec<T> = stats.iter().map(|s| s.2).collect();
    let y = normalize_new(x, dims, &mean, &istd, weight, bias);
    let var = stats.iter().map(|s| s.1).collect();
    (BatchStats { mean, var, istd }, y)
}

/// `y = weight·((x - mean)·istd) + bias` per channel into a fresh vector, one
/// task per channel; the arithmetic of [`normalize_output`].
///
/// # Panics
/// If `x` is not `N·C·hw` long or a per-channel slice is not `C` long.
pub fn normalize_new<T: Float>(
    x: &[T],
    dims: [usize; 3],
    mean: &[T],
    istd: &[T],
    weight: &[T],
    bias: &[T],
) -> Vec<T> {
    let [n, c, hw] = dims;
    assert!(
        x.len() == n * c * hw && [mean.len(), istd.len(), weight.len(), bias.len()] == [c; 4],
        "normalize_new: lengths"
    );
    if hw == 0 {
        return Vec::new();
    }
    collect_by_channel(dims, |ch, outs| {
        let (m, s, w, b) = (mean[ch], istd[ch], weight[ch], bias[ch]);
        vectorized(
            #[inline(always)]
            || {
                for (out, plane) in outs.iter_mut().zip(channel_planes(x, dims, ch)) {
                    write_plane(out, plane, |v| w * ((v - m) * s) + b);
                }
            },
        )
    })
}

/// Backward of batch normalisation from the cached input, writing `dx` over `dy` in place,
/// one task per channel; returns `(Σ dy, Σ dy·x̂)` per channel for the affine gradients.
///
/// Per channel, `x̂ = (x - mean)·istd` is recomputed (as PyTorch does, instead of keeping it):
/// one pass takes both sums, a second writes `dx = a·dy + b·x̂ + k` with `a = weight·istd`,
/// and with batch statistics over `m = N·hw` values (`batch = true`) `b = -a·Σdy·x̂ / m`,
/// `k = -a·Σdy / m`; with running statistics `b = k = 0` (the arithmetic of
/// [`batch_norm_input_grad`]).
///
/// # Panics
/// If `dy` and `x` are not `N·C·hw` long or a per-channel slice is not `C` long.
#[allow(clippy::too_many_arguments)]
pub fn train_backward_in_place<T: Float>(
    dy: &mut [T],
    x: &[T],
    dims: [usize; 3],
    mean: &[T],
    istd: &[T],
    weight: &[T],
    batch: bool,
) -> (Vec<T>, Vec<T>) {
    let [n, c, hw] = dims;
    assert!(
        dy.len() == n * c * hw
            && x.len() == dy.len()
            && [mean.len(), istd.len(), weight.len()] == [c; 3],
        "train_backward_in_place: lengths"
    );
    if hw == 0 {
        return (vec![T::zero(); c], vec![T::zero(); c]);
    }
    let m = T::of((n * hw) as f64);
    let groups = planes_by_channel(dy, dims);
    let sums: Vec<(T, T)> = groups
        .into_par_iter()
        .enumerate()
        .map(|(ch, mut planes)| {
            let (mu, s) = (mean[ch], istd[ch]);
            let a = weight[ch] * s;
            vectorized(
                #[inline(always)]
                || {
                    let (mut sum, mut dot) = (T::zero(), T::zero());
                    for (g, xp) in planes.iter().zip(channel_planes(x, dims, ch)) {
                        let (ps, pd) = lane_sum2(g, xp, |g, _| g, |g, v| g * ((v - mu) * s));
                        sum += ps;
                        dot += pd;
                    }
                    let (b, k) = match batch {
                        true => (-a * dot / m, -a * sum / m),
                        false => (T::zero(), T::zero()),
                    };
                    for (g, xp) in planes.iter_mut().zip(channel_planes(x, dims, ch)) {
                        for (d, &v) in g.iter_mut().zip(xp) {
                            *d = a * *d + b * ((v - mu) * s) + k;
                        }
                    }
                    (sum, dot)
                },
            )
        })
        .collect();
    sums.into_iter().unzip()
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

    /// Deterministic values with every kind of plane length (remainders of 8 included).
    fn values(len: usize, seed: usize) -> Vec<f64> {
        (0..len)
            .map(|i| (((i + seed) * 7919) % 1009) as f64 / 97.0 - 5.0)
            .collect()
    }

    #[test]
    fn channel_tasks_match_the_plane_loops_exactly() {
        // The per-channel training loops against the plane-by-plane loops (which keep x̂, as
        // SyncBatchNorm2d does): same arithmetic in the same order, so equal to the bit.
        for (n, c, hw) in [(1, 1, 2), (2, 3, 5), (3, 4, 13), (4, 2, 64), (2, 5, 49)] {
            let dims = [n, c, hw];
            let x = values(n * c * hw, 1);
            let dy = values(n * c * hw, 2);
            let weight = values(c, 3);
            let bias = values(c, 4);
            let (stats, y) = train_forward(&x, dims, 1e-5, &weight, &bias);
            let (mean, var) = mean_var(&x, dims);
            let istd = inverse_std(&var, 1e-5);
            assert_eq!((&stats.mean, &stats.var, &stats.istd), (&mean, &var, &istd));
            let (mut xhat, mut y_ref) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            normalize(
                &x, &mean, &istd, &weight, &bias, c, hw, &mut xhat, &mut y_ref,
            );
            assert_eq!(y, y_ref);
            assert_eq!(normalize_new(&x, dims, &mean, &istd, &weight, &bias), y_ref);
            let m = (n * hw) as f64;
            for batch in [true, false] {
                let (sum, dot) = sum_and_dot(&dy, &xhat, dims);
                let stats = batch.then_some((sum.as_slice(), dot.as_slice(), m));
                let dx_ref = batch_norm_input_grad(&dy, &xhat, &weight, &istd, stats, hw);
                let mut dx = dy.clone();
                let sums = train_backward_in_place(&mut dx, &x, dims, &mean, &istd, &weight, batch);
                assert_eq!(sums, (sum, dot), "{dims:?}");
                assert_eq!(dx, dx_ref, "{dims:?} batch {batch}");
            }
        }
    }

    #[test]
    fn a_fresh_output_is_written_everywhere() {
        // Every element of the output is written: compare with a loop by hand.
        let (n, c, hw) = (3, 2, 11);
        let x = values(n * c * hw, 5);
        let y = normalize_new(
            &x,
            [n, c, hw],
            &[1.0, -2.0],
            &[0.5, 2.0],
            &[3.0, 1.0],
            &[0.0, 1.0],
        );
        assert_eq!(y.len(), x.len());
        for (i, (&y, &v)) in y.iter().zip(&x).enumerate() {
            let want = match (i / hw) % c {
                0 => 3.0 * ((v - 1.0) * 0.5),
                _ => (v + 2.0) * 2.0 + 1.0,
            };
            assert_eq!(y, want, "element {i}");
        }
        assert!(
            normalize_new::<f32>(&[], [2, 3, 0], &[0.0; 3], &[1.0; 3], &[1.0; 3], &[0.0; 3])
                .is_empty()
        );
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
