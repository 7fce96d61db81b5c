//! The optimizers' per-element updates over contiguous slices, in one pass each: on the
//! calling thread for small parameters, in fixed chunks on the pool for large ones, each chunk
//! compiled for the widest vector instructions the CPU has ([`vectorized`]). Every element
//! sees the same arithmetic whatever the chunking, and Rust never fuses `a·b + c` into an FMA
//! by itself, so the numbers are those of the plain scalar loop, for any thread count.

use super::elementwise::{CHUNK, PARALLEL_MIN};
use super::simd::vectorized;
use crate::parallel::prelude::*;
use crate::tensor::Float;

/// SGD hyperparameters for one step (see `optim::Sgd` for the rule).
#[derive(Clone, Copy, Debug)]
pub struct SgdStep<T> {
    /// Learning rate.
    pub lr: T,
    /// The gradient's sign: 1, or -1 to maximize.
    pub grad_sign: T,
    /// L2 weight decay, added to the gradient as `wd·p`.
    pub weight_decay: T,
    /// Momentum factor μ.
    pub momentum: T,
    /// `1 - dampening`.
    pub keep: T,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// The buffer's first step: it becomes the gradient itself.
    pub first: bool,
}

/// Plain SGD: `p -= lr·(sign·g + wd·p)` (`sign` is -1 to maximize).
///
/// # Panics
/// If the slices differ in length.
pub fn sgd<T: Float>(p: &mut [T], g: &[T], lr: T, sign: T, wd: T) {
    assert_eq!(p.len(), g.len(), "sgd: lengths");
    #[inline(always)]
    fn run<T: Float>(p: &mut [T], g: &[T], lr: T, sign: T, wd: T) {
        for (p, &g) in p.iter_mut().zip(g) {
            *p -= lr * (sign * g + wd * *p);
        }
    }
    if p.len() < PARALLEL_MIN {
        vectorized(|| run(p, g, lr, sign, wd));
    } else {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .for_each(|(p, g)| vectorized(|| run(p, g, lr, sign, wd)));
    }
}

/// SGD with a momentum buffer:
/// `g' = sign·g + wd·p`, `buf = g'` (first step) or `μ·buf + keep·g'`,
/// `d = g' + μ·buf` (Nesterov) or `buf`, `p -= lr·d`.
///
/// # Panics
/// If the slices differ in length.
pub fn sgd_momentum<T: Float>(p: &mut [T], g: &[T], buf: &mut [T], s: SgdStep<T>) {
    assert!(
        p.len() == g.len() && buf.len() == g.len(),
        "sgd_momentum: lengths"
    );
    #[inline(always)]
    fn run<T: Float, const FIRST: bool, const NESTEROV: bool>(
        p: &mut [T],
        g: &[T],
        buf: &mut [T],
        s: SgdStep<T>,
    ) {
        for ((p, &g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
            let g = s.grad_sign * g + s.weight_decay * *p;
            *b = if FIRST {
                g
            } else {
                s.momentum * *b + s.keep * g
            };
            let d = if NESTEROV { g + s.momentum * *b } else { *b };
            *p -= s.lr * d;
        }
    }
    let chunk = |p: &mut [T], g: &[T], b: &mut [T]| match (s.first, s.nesterov) {
        (true, true) => vectorized(|| run::<T, true, true>(p, g, b, s)),
        (true, false) => vectorized(|| run::<T, true, false>(p, g, b, s)),
        (false, true) => vectorized(|| run::<T, false, true>(p, g, b, s)),
        (false, false) => vectorized(|| run::<T, false, false>(p, g, b, s)),
    };
    if p.len() < PARALLEL_MIN {
        chunk(p, g, buf);
    } else {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK).zip(buf.par_chunks_mut(CHUNK)))
            .for_each(|(p, (g, b))| chunk(p, g, b));
    }
}

/// Adam(W) hyperparameters for one step (see `optim::Adam` for the rule).
#[derive(Clone, Copy, Debug)]
pub struct AdamStep<T> {
    /// `p *= shrink` first (AdamW's decoupled decay; 1 for Adam).
    pub shrink: T,
    /// The gradient's sign: 1, or -1 to maximize.
    pub grad_sign: T,
    /// L2 decay added to the gradient as `wd·p` (Adam; 0 for AdamW).
    pub coupled_wd: T,
    /// β₁.
    pub beta1: T,
    /// β₂.
    pub beta2: T,
    /// 1 - β₁.
    pub one_m_beta1: T,
    /// 1 - β₂.
    pub one_m_beta2: T,
    /// `lr / (1 - β₁ᵗ)`.
    pub step_size: T,
    /// `sqrt(1 - β₂ᵗ)`.
    pub bias_correction2_sqrt: T,
    /// ε.
    pub eps: T,
}

/// Adam(W): `p *= shrink`, `g' = sign·g + wd·p`, `m = β₁·m + (1-β₁)·g'`,
/// `v = β₂·v + (1-β₂)·g'²`, `p -= step_size·m / (sqrt(v̂) / bc2 + ε)`, where `v̂ = v`, or with
/// AMSGrad (`v_max` given) `v̂ = v_max = max(v_max, v)`, NaN kept.
///
/// # Panics
/// If the slices differ in length.
pub fn adam<T: Float>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    v_max: Option<&mut [T]>,
    s: AdamStep<T>,
) {
    let v_max_len = v_max.as_ref().map_or(g.len(), |w| w.len());
    assert!(
        p.len() == g.len() && m.len() == g.len() && v.len() == g.len() && v_max_len == g.len(),
        "adam: lengths"
    );
    #[inline(always)]
    fn run<T: Float, const AMSGRAD: bool>(
        p: &mut [T],
        g: &[T],
        m: &mut [T],
        v: &mut [T],
        v_max: &mut [T],
        s: AdamStep<T>,
    ) {
        let mut v_max = v_max.iter_mut();
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *p *= s.shrink;
            let g = s.grad_sign * g + s.coupled_wd * *p;
            *m = s.beta1 * *m + s.one_m_beta1 * g;
            *v = s.beta2 * *v + s.one_m_beta2 * g * g;
            let mut v_hat = *v;
            if AMSGRAD {
                if let Some(w) = v_max.next() {
                    // A NaN is kept, as torch.maximum keeps it. (`|`: no branch.)
                    if (*v > *w) | v.is_nan() {
                        *w = *v;
                    }
                    v_hat = *w;
                }
            }
            *p -= s.step_size * *m / (v_hat.sqrt() / s.bias_correction2_sqrt + s.eps);
        }
    }
    let chunk = |p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], w: Option<&mut [T]>| match w {
        Some(w) => vectorized(|| run::<T, true>(p, g, m, v, w, s)),
        None => vectorized(|| run::<T, false>(p, g, m, v, &mut [], s)),
    };
    if p.len() < PARALLEL_MIN {
        chunk(p, g, m, v, v_max);
        return;
    }
    let states = m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK));
    let params = p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK));
    match v_max {
        Some(w) => params
            .zip(states.zip(w.par_chunks_mut(CHUNK)))
            .for_each(|((p, g), ((m, v), w))| chunk(p, g, m, v, Some(w))),
        None => params
            .zip(states)
            .for_each(|((p, g), (m, v))| chunk(p, g, m, v, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small and large (parallel) slices give exactly the scalar loop's numbers.
    #[test]
    fn chunked_updates_match_the_scalar_loop() {
        for n in [0, 13, PARALLEL_MIN + 4321] {
            let g: Vec<f32> = (0..n).map(|i| ((i * 37) % 23) as f32 * 0.1 - 1.1).collect();
            let p0: Vec<f32> = (0..n).map(|i| ((i * 11) % 17) as f32 * 0.2 - 1.5).collect();

            let mut p = p0.clone();
            sgd(&mut p, &g, 0.1, 1.0, 0.01);
            for i in 0..n {
                assert_eq!(p[i], p0[i] - 0.1 * (g[i] + 0.01 * p0[i]));
            }
            let mut p = p0.clone();
            sgd(&mut p, &g, 0.1, -1.0, 0.01);
            for i in 0..n {
                assert_eq!(p[i], p0[i] - 0.1 * (-g[i] + 0.01 * p0[i]));
            }

            for (first, nesterov) in [(true, false), (false, false), (true, true), (false, true)] {
                let s = SgdStep {
                    lr: 0.1,
                    grad_sign: 1.0,
                    weight_decay: 0.01,
                    momentum: 0.9,
                    keep: 0.75,
                    nesterov,
                    first,
                };
                let (mut p, mut buf) = (p0.clone(), g.iter().map(|v| v * 0.5).collect::<Vec<_>>());
                let buf0 = buf.clone();
                sgd_momentum(&mut p, &g, &mut buf, s);
                for i in 0..n {
                    let gi = g[i] + 0.01 * p0[i];
                    let b = if first { gi } else { 0.9 * buf0[i] + 0.75 * gi };
                    let d = if nesterov { gi + 0.9 * b } else { b };
                    assert_eq!((buf[i], p[i]), (b, p0[i] - 0.1 * d));
                }
            }

            let s = AdamStep {
                shrink: 0.999,
                grad_sign: 1.0,
                coupled_wd: 0.01,
                beta1: 0.9,
                beta2: 0.99,
                one_m_beta1: 0.1,
                one_m_beta2: 0.01,
                step_size: 0.002,
                bias_correction2_sqrt: 0.3,
                eps: 1e-8,
            };
            let (mut p, mut m, mut v) = (p0.clone(), vec![0.5f32; n], vec![0.25f32; n]);
            adam(&mut p, &g, &mut m, &mut v, None, s);
            for i in 0..n {
                let pi = p0[i] * 0.999;
                let gi = g[i] + 0.01 * pi;
                let mi = 0.9 * 0.5 + 0.1 * gi;
                let vi = 0.99 * 0.25 + 0.01 * gi * gi;
                assert_eq!((m[i], v[i]), (mi, vi));
                assert_eq!(p[i], pi - 0.002 * mi / (vi.sqrt() / 0.3 + 1e-8));
            }
            // AMSGrad, maximizing: the running maximum of v divides, whichever is larger.
            let s = AdamStep {
                grad_sign: -1.0,
                ..s
            };
            let w0: Vec<f32> = (0..n).map(|i| if i % 2 == 0 { 0.0 } else { 9.0 }).collect();
            let (mut p, mut m, mut v, mut w) =
                (p0.clone(), vec![0.5f32; n], vec![0.25f32; n], w0.clone());
            adam(&mut p, &g, &mut m, &mut v, Some(&mut w), s);
            for i in 0..n {
                let pi = p0[i] * 0.999;
                let gi = -g[i] + 0.01 * pi;
                let mi = 0.9 * 0.5 + 0.1 * gi;
                let vi = 0.99 * 0.25 + 0.01 * gi * gi;
                let wi = w0[i].max(vi);
                assert_eq!((m[i], v[i], w[i]), (mi, vi, wi));
                assert_eq!(p[i], pi - 0.002 * mi / (wi.sqrt() / 0.3 + 1e-8));
            }
        }
    }
}
