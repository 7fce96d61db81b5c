//! Loss functions: each returns the mean loss and its gradient with respect to the input,
//! ready to hand to the last layer's `backward`.
//!
//! ```text
//! cross entropy, logits z [N, C], targets t [N], smoothing ε:
//!   log p_nj = z_nj - max_j z_nj - log Σ_j exp(z_nj - max_j z_nj)      (stable log-softmax)
//!   q_nj     = (1 - ε)·[j = t_n] + ε/C
//!   loss     = -(1/N) Σ_n Σ_j q_nj · log p_nj
//!   dz_nj    = (p_nj - q_nj) / N
//!
//! mean squared error, input x and target y with M elements:
//!   loss = (1/M) Σ (x - y)²
//!   dx   = 2(x - y) / M
//! ```
//!
//! Both match PyTorch's `reduction="mean"` (`F.cross_entropy(..., label_smoothing=ε)` and
//! `F.mse_loss`).
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::error::{Error, Result};
use crate::tensor::{contiguous, fmt_shape, from_vec, Float, Tensor};

/// Softmax cross-entropy on raw logits `[N, C]` with integer class targets, averaged over
/// the batch, with optional label smoothing (PyTorch `nn.CrossEntropyLoss`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CrossEntropyLoss {
    label_smoothing: f64,
}

impl CrossEntropyLoss {
    /// Cross-entropy without label smoothing.
    pub fn new() -> Self {
        CrossEntropyLoss {
            label_smoothing: 0.0,
        }
    }

    /// Cross-entropy against the smoothed targets `(1 - eps)·onehot + eps/C`, `0 <= eps <= 1`.
    pub fn with_label_smoothing(eps: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&eps) {
            return Err(Error::config(
                "CrossEntropyLoss",
                format!("label_smoothing must be in [0, 1], got {eps}"),
            ));
        }
        Ok(CrossEntropyLoss {
            label_smoothing: eps,
        })
    }

    /// The label smoothing `eps`.
    pub fn label_smoothing(&self) -> f64 {
        self.label_smoothing
    }

    /// The mean loss over the batch and dLoss/dlogits `[N, C]`.
    ///
    /// Errors: logits not 2-D, an empty batch, `targets.len() != N`, or a target `>= C`.
    /// Non-finite logits give a non-finite loss (as in PyTorch); check it if it matters.
    pub fn forward<T: Float>(
        &self,
        logits: &Tensor<T>,
        targets: &[usize],
    ) -> Result<(T, Tensor<T>)> {
        const WHAT: &str = "CrossEntropyLoss";
        let &[n, c] = logits.shape() else {
            return Err(Error::shape(WHAT, "logits [N, C]", logits.shape()));
        };
        if n == 0 || c == 0 {
            return Err(Error::input(
                WHAT,
                format!("empty logits {}", fmt_shape(logits.shape())),
            ));
        }
        if targets.len() != n {
            return Err(Error::input(
                WHAT,
                format!("{} targets for a batch of {n} logits", targets.len()),
            ));
        }
        if let Some((i, &t)) = targets.iter().enumerate().find(|&(_, &t)| t >= c) {
            return Err(Error::input(
                WHAT,
                format!("target[{i}] = {t} is not a class index below {c}"),
            ));
        }

        let eps = T::of(self.label_smoothing);
        let on = T::one() - eps; // weight of the true class beyond the uniform eps/C
        let uniform = eps / T::of(c as f64);
        let inv_n = T::one() / T::of(n as f64);
        let z = contiguous(logits);
        let mut grad = vec![T::zero(); n * c];
        let mut total = 0.0f64;
        for ((z, g), &t) in z.chunks_exact(c).zip(grad.chunks_exact_mut(c)).zip(targets) {
            // g first holds z - max, then exp(z - max), then the gradient.
            let max = z.iter().copied().fold(T::neg_infinity(), T::max);
            g.iter_mut().zip(z).for_each(|(g, &z)| *g = z - max);
            let sum_shifted: T = g.iter().copied().sum();
            g.iter_mut().for_each(|g| *g = g.exp());
            let log_sum = g.iter().copied().sum::<T>().ln();
            // -Σ q log p = -(1 - ε)·log p_t - (ε/C)·Σ_j log p_j, with Σ_j log p_j = Σ(z - max) - C·log_sum.
            // `t < c` was checked above; a NaN (never a panic) if that ever changed.
            let z_t = z.get(t).copied().unwrap_or_else(T::nan);
            let log_p_t = z_t - max - log_sum;
            let sum_log_p = sum_shifted - T::of(c as f64) * log_sum;
            let mut row = -on * log_p_t;
            if eps != T::zero() {
                row -= uniform * sum_log_p;
            }
            total += row.as_f64();
            let inv_sum = (-log_sum).exp();
            g.iter_mut()
                .for_each(|g| *g = (*g * inv_sum - uniform) * inv_n);
            if let Some(g_t) = g.get_mut(t) {
                *g_t -= on * inv_n;
            }
        }
        Ok((T::of(total / n as f64), from_vec(&[n, c], grad)))
    }
}

/// Mean squared error over all elements (PyTorch `nn.MSELoss`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MseLoss;

impl MseLoss {
    /// Mean squared error.
    pub fn new() -> Self {
        MseLoss
    }

    /// The mean of `(input - target)²` and its gradient with respect to `input`.
    ///
    /// Errors: shapes that differ, or an empty input.
    pub fn forward<T: Float>(
        &self,
        input: &Tensor<T>,
        target: &Tensor<T>,
    ) -> Result<(T, Tensor<T>)> {
        if input.shape() != target.shape() {
            let expected = format!("{} (the target's shape)", fmt_shape(target.shape()));
            return Err(Error::shape("MseLoss", expected, input.shape()));
        }
        if input.is_empty() {
            return Err(Error::input(
                "MseLoss",
                format!("empty input {}", fmt_shape(input.shape())),
            ));
        }
        let m = T::of(input.len() as f64);
        let two_over_m = T::of(2.0) / m;
        let (x, y) = (contiguous(input), contiguous(target));
        let mut sum = T::zero();
        let grad: Vec<T> = x
            .iter()
            .zip(y.iter())
            .map(|(&x, &y)| {
                let d = x - y;
                sum += d * d;
                two_over_m * d
            })
            .collect();
        Ok((sum / m, from_vec(input.shape(), grad)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::random_tensor;
    use crate::testutil::{assert_close, parity};

    fn scalar(x: f64) -> Tensor<f64> {
        from_vec(&[], vec![x])
    }

    /// Central differences of `loss` at every coordinate of `x`.
    fn numeric_grad(x: &Tensor<f64>, loss: impl Fn(&Tensor<f64>) -> f64) -> Tensor<f64> {
        let h = 1e-6;
        let mut g = x.clone();
        let mut x = x.clone();
        for i in 0..x.len() {
            let orig = x.as_slice().unwrap()[i];
            x.as_slice_mut().unwrap()[i] = orig + h;
            let up = loss(&x);
            x.as_slice_mut().unwrap()[i] = orig - h;
            let down = loss(&x);
            x.as_slice_mut().unwrap()[i] = orig;
            g.as_slice_mut().unwrap()[i] = (up - down) / (2.0 * h);
        }
        g
    }

    #[test]
    fn cross_entropy_gradient_matches_finite_differences() {
        for (seed, (n, c, eps)) in [
            (3, 5, 0.0),
            (1, 2, 0.0),
            (4, 7, 0.1),
            (2, 3, 1.0),
            (5, 1, 0.3),
        ]
        .into_iter()
        .enumerate()
        {
            let z = random_tensor(&[n, c], seed as u64).mapv(|v| 3.0 * v);
            let targets: Vec<usize> = (0..n).map(|i| (i * 7 + seed) % c).collect();
            let ce = CrossEntropyLoss::with_label_smoothing(eps).unwrap();
            let (_, grad) = ce.forward(&z, &targets).unwrap();
            let numeric = numeric_grad(&z, |z| ce.forward(z, &targets).unwrap().0);
            let err = grad
                .iter()
                .zip(&numeric)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(err < 1e-7, "n {n} c {c} eps {eps}: err {err:e}");
        }
    }

    #[test]
    fn mse_gradient_matches_finite_differences() {
        let x = random_tensor(&[2, 3, 4], 1);
        let y = random_tensor(&[2, 3, 4], 2);
        let (_, grad) = MseLoss::new().forward(&x, &y).unwrap();
        let numeric = numeric_grad(&x, |x| MseLoss::new().forward(x, &y).unwrap().0);
        let err = grad
            .iter()
            .zip(&numeric)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-8, "err {err:e}");
    }

    #[test]
    fn label_smoothing_by_hand() {
        // Two classes, logits [0, ln 3]: softmax [1/4, 3/4], log p = [-ln 4, ln 3 - ln 4].
        // Target 0, eps 0.2: q = [0.8 + 0.1, 0.1] = [0.9, 0.1].
        let z = from_vec(&[1, 2], vec![0.0, 3f64.ln()]);
        let (loss, grad) = CrossEntropyLoss::with_label_smoothing(0.2)
            .unwrap()
            .forward(&z, &[0])
            .unwrap();
        let want = 0.9 * 4f64.ln() + 0.1 * (4f64.ln() - 3f64.ln());
        assert!((loss - want).abs() < 1e-15, "{loss} vs {want}");
        let want_grad = [0.25 - 0.9, 0.75 - 0.1];
        assert!(
            grad.iter()
                .zip(want_grad)
                .all(|(a, b)| (a - b).abs() < 1e-15),
            "{grad}"
        );
        // Without smoothing: loss = ln 4 for the same row, averaged with a second row [ln 3, 0] -> target 0.
        let z = from_vec(&[2, 2], vec![0.0, 3f64.ln(), 3f64.ln(), 0.0]);
        let (loss, grad) = CrossEntropyLoss::new().forward(&z, &[0, 0]).unwrap();
        let want = (4f64.ln() + (4f64.ln() - 3f64.ln())) / 2.0;
        assert!((loss - want).abs() < 1e-15);
        let want_grad = [
            (0.25 - 1.0) / 2.0,
            0.75 / 2.0,
            (0.75 - 1.0) / 2.0,
            0.25 / 2.0,
        ];
        assert!(
            grad.iter()
                .zip(want_grad)
                .all(|(a, b)| (a - b).abs() < 1e-15),
            "{grad}"
        );
    }

    #[test]
    fn huge_logits_stay_finite() {
        let z: Tensor<f64> = from_vec(
            &[3, 3],
            vec![
                1000.0, -1000.0, 0.0, -1000.0, -1000.0, -999.0, 5000.0, -5000.0, 0.0,
            ],
        );
        for eps in [0.0, 0.1] {
            let ce = CrossEntropyLoss::with_label_smoothing(eps).unwrap();
            let (loss, grad) = ce.forward(&z, &[1, 2, 0]).unwrap();
            assert!(
                loss.is_finite() && grad.iter().all(|g| g.is_finite()),
                "eps {eps}: {loss} {grad}"
            );
            // Row 0 misses by 2000: its loss dominates, about 2000/3 without smoothing.
            assert!(loss > 600.0);
            let (loss32, grad32) = ce.forward(&z.mapv(|v| v as f32), &[1, 2, 0]).unwrap();
            assert!(loss32.is_finite() && grad32.iter().all(|g| g.is_finite()));
            assert!((loss32 as f64 - loss).abs() <= 1e-5 * loss);
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        let z = random_tensor(&[6, 10], 9);
        let t = [0, 9, 3, 3, 5, 1];
        let ce = CrossEntropyLoss::with_label_smoothing(0.1).unwrap();
        let (l64, g64) = ce.forward(&z, &t).unwrap();
        let (l32, g32) = ce.forward(&z.mapv(|v| v as f32), &t).unwrap();
        assert!((l32 as f64 - l64).abs() < 1e-5 * (1.0 + l64.abs()));
        assert!(g32
            .iter()
            .zip(&g64)
            .all(|(&a, &b)| (a as f64 - b).abs() < 1e-6));
        let y = random_tensor(&[6, 10], 10);
        let (m64, d64) = MseLoss::new().forward(&z, &y).unwrap();
        let (m32, d32) = MseLoss::new()
            .forward(&z.mapv(|v| v as f32), &y.mapv(|v| v as f32))
            .unwrap();
        assert!((m32 as f64 - m64).abs() < 1e-5 * m64);
        assert!(d32
            .iter()
            .zip(&d64)
            .all(|(&a, &b)| (a as f64 - b).abs() < 1e-6));
    }

    #[test]
    fn matches_pytorch_cross_entropy() {
        for k in 0..5 {
            let (cfg, t) = parity(&format!("cross_entropy_{k:03}.safetensors"));
            let eps = cfg["label_smoothing"].as_f64().unwrap();
            let targets: Vec<usize> = t["target"].iter().map(|&x| x as usize).collect();
            let ce = CrossEntropyLoss::with_label_smoothing(eps).unwrap();
            let (loss, grad) = ce.forward(&t["input"], &targets).unwrap();
            assert_eq!(t["grad_output"], scalar(1.0));
            assert_close(&format!("case {k} loss"), &scalar(loss), &t["output"]);
            assert_close(&format!("case {k} grad"), &grad, &t["grad_input"]);
        }
    }

    #[test]
    fn matches_pytorch_mse() {
        for k in 0..2 {
            let (_, t) = parity(&format!("mse_loss_{k:03}.safetensors"));
            let (loss, grad) = MseLoss::new().forward(&t["input"], &t["target"]).unwrap();
            assert_close("mse loss", &scalar(loss), &t["output"]);
            assert_close("mse grad", &grad, &t["grad_input"]);
        }
    }

    #[test]
    fn errors() {
        let ce = CrossEntropyLoss::new();
        let z = random_tensor(&[2, 3], 0);
        assert!(matches!(
            ce.forward(&z, &[0, 3]),
            Err(Error::InvalidInput { .. })
        ));
        assert!(matches!(
            ce.forward(&z, &[0]),
            Err(Error::InvalidInput { .. })
        ));
        assert!(matches!(
            ce.forward(&random_tensor(&[2, 3, 1], 0), &[0, 0]),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            ce.forward(&random_tensor(&[0, 3], 0), &[]),
            Err(Error::InvalidInput { .. })
        ));
        for bad in [-0.1, 1.5, f64::NAN] {
            assert!(CrossEntropyLoss::with_label_smoothing(bad).is_err());
        }
        let mse = MseLoss::new();
        assert!(matches!(
            mse.forward(&z, &random_tensor(&[3, 2], 0)),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(mse
            .forward(&random_tensor(&[0], 0), &random_tensor(&[0], 0))
            .is_err());
    }
}
