//! Element-wise loops over contiguous slices, split across rayon threads when large enough to
//! pay for it.

use crate::tensor::Float;
use rayon::prelude::*;

/// Below this many elements a loop stays on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;
/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

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
        }
    }
}
