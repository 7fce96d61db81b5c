//! Element-wise loops over contiguous slices, split across rayon threads when large enough to
//! pay for it.

use super::simd::vectorized;
use crate::parallel::prelude::*;
use crate::tensor::Float;

/// Below this many elements a loop stays on the calling thread.
pub(crate) const PARALLEL_MIN: usize = 1 << 15;
/// Elements per parallel task.
pub(crate) const CHUNK: usize = 1 << 14;

/// `out[i] = f(x[i])`.
///
/// # Panics
/// If the slices differ in length.
pub fn map<T: Float>(x: &[T], out: &mut [T], f: impl Fn(T) -> T + Sync) {
    assert_eq!(x.len(), out.len(), "map: lengths");
    if x.len() < PARALLEL_MIN {
        out.iter_mut().zip(x).for_each(|(o, &v)| *o = f(v));
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, x)| {
                o.iter_mut().zip(x).for_each(|(o, &v)| *o = f(v));
            });
    }
}

/// `out[i] = f(a[i], b[i])`.
///
/// # Panics
/// If the slices differ in length.
pub fn zip_map<T: Float>(a: &[T], b: &[T], out: &mut [T], f: impl Fn(T, T) -> T + Sync) {
    assert!(
        a.len() == out.len() && b.len() == out.len(),
        "zip_map: lengths"
    );
    if a.len() < PARALLEL_MIN {
        out.iter_mut()
            .zip(a.iter().zip(b))
            .for_each(|(o, (&u, &v))| *o = f(u, v));
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
            .for_each(|(o, (a, b))| {
                o.iter_mut()
                    .zip(a.iter().zip(b))
                    .for_each(|(o, (&u, &v))| *o = f(u, v))
            });
    }
}

/// `x[i] = f(x[i])` in place.
pub fn map_inplace<T: Float>(x: &mut [T], f: impl Fn(T) -> T + Sync) {
    if x.len() < PARALLEL_MIN {
        x.iter_mut().for_each(|v| *v = f(*v));
    } else {
        x.par_chunks_mut(CHUNK)
            .for_each(|x| x.iter_mut().for_each(|v| *v = f(*v)));
    }
}

/// ReLU in place, recording in `keep` where the gradient passes: `keep[i] = 1` unless the
/// result is `<= 0` (so a NaN passes, as PyTorch's `threshold_backward`).
///
/// # Panics
/// If the slices differ in length.
pub fn relu_with_mask<T: Float>(y: &mut [T], keep: &mut [u8]) {
    assert_eq!(y.len(), keep.len(), "relu_with_mask: lengths");
    #[inline(always)]
    fn run<T: Float>(y: &mut [T], keep: &mut [u8]) {
        for (v, k) in y.iter_mut().zip(keep.iter_mut()) {
            *v = relu(*v);
            *k = u8::from(*v > T::zero() || v.is_nan());
        }
    }
    if y.len() < PARALLEL_MIN {
        vectorized(|| run(y, keep));
    } else {
        y.par_chunks_mut(CHUNK)
            .zip(keep.par_chunks_mut(CHUNK))
            .for_each(|(y, k)| vectorized(|| run(y, k)));
    }
}

/// `g[i] = 0` where `keep[i] == 0`, in place (the backward of [`relu_with_mask`]).
///
/// # Panics
/// If the slices differ in length.
pub fn apply_mask<T: Float>(g: &mut [T], keep: &[u8]) {
    assert_eq!(g.len(), keep.len(), "apply_mask: lengths");
    #[inline(always)]
    fn run<T: Float>(g: &mut [T], keep: &[u8]) {
        for (v, &k) in g.iter_mut().zip(keep) {
            *v = if k == 0 { T::zero() } else { *v };
        }
    }
    zipped_chunks(g, keep, run);
}

/// `y[i] += x[i]` (the residual sum, and gradients meeting where a value fans out).
///
/// # Panics
/// If the slices differ in length.
pub fn add_assign<T: Float>(y: &mut [T], x: &[T]) {
    assert_eq!(y.len(), x.len(), "add_assign: lengths");
    #[inline(always)]
    fn run<T: Float>(y: &mut [T], x: &[T]) {
        for (a, &b) in y.iter_mut().zip(x) {
            *a += b;
        }
    }
    zipped_chunks(y, x, run);
}

/// Runs `run(y, x)` compiled for the CPU's vector unit: on the whole slices when they are
/// short, else on matching chunks of `CHUNK` elements in parallel. `y` and `x` have one length.
#[inline(always)]
fn zipped_chunks<T: Send, U: Sync>(y: &mut [T], x: &[U], run: impl Fn(&mut [T], &[U]) + Sync) {
    if y.len() < PARALLEL_MIN {
        vectorized(|| run(y, x));
    } else {
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| vectorized(|| run(y, x)));
    }
}

/// `max(v, 0)`, keeping NaN (as PyTorch's `relu`).
#[inline(always)]
pub fn relu<T: Float>(v: T) -> T {
    if v > T::zero() || v.is_nan() {
        v
    } else {
        T::zero()
    }
}

/// `y = scale[c]·y + shift[c]` in place over `[.., C, inner]` data, `C = scale.len()`: run `p`
/// of `inner` values belongs to channel `p % C`.
///
/// # Panics
/// If `scale` and `shift` differ in length or `y` is not whole `[C, inner]` blocks.
pub fn affine_channels<T: Float>(y: &mut [T], scale: &[T], shift: &[T], inner: usize) {
    let c = scale.len();
    assert!(
        c == shift.len() && c > 0 && inner > 0 && y.len() % (c * inner) == 0,
        "affine_channels: lengths"
    );
    let run = |(p, y): (usize, &mut [T])| {
        let (a, b) = (scale[p % c], shift[p % c]);
        y.iter_mut().for_each(|v| *v = a * *v + b);
    };
    if y.len() < PARALLEL_MIN {
        y.chunks_mut(inner).enumerate().for_each(run);
    } else {
        y.par_chunks_mut(inner).enumerate().for_each(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_inputs_agree_with_a_plain_loop() {
        for n in [0, 7, PARALLEL_MIN + 12_345] {
            let a: Vec<f32> = (0..n).map(|i| (i % 97) as f32 - 48.0).collect();
            let b: Vec<f32> = (0..n).map(|i| (i % 13) as f32).collect();
            let mut out = vec![0.0; n];
            map(&a, &mut out, |v| v.max(0.0));
            assert!(out.iter().zip(&a).all(|(o, v)| *o == v.max(0.0)));
            zip_map(&a, &b, &mut out, |u, v| u * v + 1.0);
            assert!(out
                .iter()
                .zip(a.iter().zip(&b))
                .all(|(o, (u, v))| *o == u * v + 1.0));
            let mut inplace = a.clone();
            map_inplace(&mut inplace, |v| 2.0 * v);
            assert!(inplace.iter().zip(&a).all(|(o, v)| *o == 2.0 * v));
            // Two channels of 3 values: scale and shift alternate every 3 elements.
            let mut aff = a[..n - n % 6].to_vec();
            affine_channels(&mut aff, &[2.0, -1.0], &[0.5, 3.0], 3);
            for (i, (o, v)) in aff.iter().zip(&a).enumerate() {
                let (s, t) = if (i / 3) % 2 == 0 {
                    (2.0, 0.5)
                } else {
                    (-1.0, 3.0)
                };
                assert_eq!(*o, s * v + t);
            }
        }
    }

    #[test]
    fn relu_mask_matches_the_scalar_relu() {
        for n in [0, 9, PARALLEL_MIN + 77] {
            let x: Vec<f32> = (0..n)
                .map(|i| match i % 5 {
                    0 => f32::NAN,
                    1 => 0.0,
                    2 => -1.5,
                    _ => i as f32 * 0.25,
                })
                .collect();
            let mut y = x.clone();
            let mut keep = vec![7u8; n];
            relu_with_mask(&mut y, &mut keep);
            let mut g = vec![2.0f32; n];
            apply_mask(&mut g, &keep);
            for i in 0..n {
                let want = relu(x[i]);
                assert!(y[i] == want || (y[i].is_nan() && want.is_nan()));
                let passes = x[i] > 0.0 || x[i].is_nan();
                assert_eq!(keep[i], u8::from(passes));
                assert_eq!(g[i], if passes { 2.0 } else { 0.0 });
            }
        }
    }

    #[test]
    fn relu_keeps_nan_and_zeroes_negatives() {
        assert!(relu(f64::NAN).is_nan());
        assert_eq!(relu(-2.5f32), 0.0);
        assert_eq!(relu(3.0f64), 3.0);
        assert_eq!(relu(f64::NEG_INFINITY), 0.0);
        assert_eq!(relu(f64::INFINITY), f64::INFINITY);
    }
}
