use super::expect_shape;
use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::tensor::{contiguous, from_vec, Float, Tensor};

/// Local response normalisation across channels (AlexNet, GoogLeNet), exactly as
/// `nn.LocalResponseNorm(size = n, alpha, beta, k)`.
///
/// ```text
/// window(c) = [c - ⌊n/2⌋, c + ⌊(n-1)/2⌋] ∩ [0, C)      (even n: one more channel before than after)
/// forward:   s_c  = k + (alpha/n) · Σ_{c' ∈ window(c)} a_c'²
///            b_c  = a_c · s_c^(-beta)
/// backward:  da_c = db_c · s_c^(-beta)
///                   - (2·alpha·beta/n) · a_c · Σ_{c' : c ∈ window(c')} db_c' · a_c' · s_c'^(-beta-1)
/// ```
///
/// Channels outside `[0, C)` count as zero, but the divisor stays `n`. The scale `s` is cached
/// for backward. Input is `[N, C, H, W]` (any rank ≥ 3, normalised over dim 1, as PyTorch).
///
/// # Alpha: PyTorch/Caffe versus the AlexNet paper
///
/// PyTorch (like Caffe) divides `alpha` by the window size `n`; the AlexNet paper (Krizhevsky
/// et al. 2012, section 3.3) writes `b = a / (k + alpha · Σ a²)^beta` with no division, and
/// uses `k = 2, n = 5, alpha = 1e-4, beta = 0.75`. The two formulas coincide when the value
/// passed here is `n` times the paper's:
///
/// * `LocalResponseNormConfig::new(5).alpha(5e-4).k(2.0)` computes the paper's formula
///   (`5e-4 / 5 = 1e-4` per squared activation);
/// * `LocalResponseNormConfig::new(5).k(2.0)` (`alpha = 1e-4`) is what Caffe's reference AlexNet and most
///   PyTorch ports use: a coefficient of `2e-5` per squared activation, five times weaker than
///   the paper.
#[derive(Clone, Debug)]
pub struct LocalResponseNorm<T: Float> {
    size: usize,
    alpha: f64,
    beta: f64,
    k: f64,
    /// Input and scale `s` of the last forward.
    cache: Option<(Tensor<T>, Vec<T>)>,
}

/// How to build a [`LocalResponseNorm`]: the window size `n` and PyTorch's defaults
/// `alpha = 1e-4`, `beta = 0.75`, `k = 1`.
///
/// ```
/// use convnet::layers::LocalResponseNormConfig;
/// // AlexNet as in Caffe's reference model and most PyTorch ports.
/// let cfg = LocalResponseNormConfig::new(5).k(2.0);
/// assert_eq!((cfg.size, cfg.alpha, cfg.beta, cfg.k), (5, 1e-4, 0.75, 2.0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LocalResponseNormConfig {
    /// Window size `n` in channels.
    pub size: usize,
    /// Scale `alpha`, divided by `n` in the formula (default `1e-4`).
    pub alpha: f64,
    /// Exponent `beta` (default `0.75`).
    pub beta: f64,
    /// Additive constant `k` (default `1.0`).
    pub k: f64,
}

impl LocalResponseNormConfig {
    /// Windows of `size` channels with PyTorch's defaults for `alpha`, `beta` and `k`.
    pub fn new(size: usize) -> Self {
        LocalResponseNormConfig {
            size,
            alpha: 1e-4,
            beta: 0.75,
            k: 1.0,
        }
    }

    /// Sets `alpha` (PyTorch's, divided by `size`; see [`LocalResponseNorm`]).
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }

    /// Sets `beta`.
    pub fn beta(mut self, beta: f64) -> Self {
        self.beta = beta;
        self
    }

    /// Sets `k`.
    pub fn k(mut self, k: f64) -> Self {
        self.k = k;
        self
    }
}

impl<T: Float> LocalResponseNorm<T> {
    /// LRN over windows of `size` channels with PyTorch's parameters (`alpha` is divided by
    /// `size`; see the type's documentation), or [`Error::InvalidConfig`] for `size == 0`, a
    /// non-finite parameter, `alpha < 0` or `k <= 0` (the scale must stay positive).
    pub fn new(cfg: LocalResponseNormConfig) -> Result<Self> {
        let LocalResponseNormConfig {
            size,
            alpha,
            beta,
            k,
        } = cfg;
        let fail = |msg: &str| Err(Error::config("LocalResponseNorm", msg));
        if size == 0 {
            return fail("size must be at least 1");
        }
        if !(alpha.is_finite() && beta.is_finite() && k.is_finite()) {
            return fail(&format!(
                "alpha, beta and k must be finite (got {alpha}, {beta}, {k})"
            ));
        }
        if alpha < 0.0 || k <= 0.0 {
            return fail(&format!(
                "need alpha >= 0 and k > 0 (got alpha {alpha}, k {k})"
            ));
        }
        Ok(LocalResponseNorm {
            size,
            alpha,
            beta,
            k,
            cache: None,
        })
    }

    /// The window size `n`.
    pub fn size(&self) -> usize {
        self.size
    }

    /// `alpha` as given (the formula uses `alpha / n`).
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The exponent `beta`.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The additive constant `k`.
    pub fn k(&self) -> f64 {
        self.k
    }

    /// `[N, C, inner]` of an input of rank ≥ 3.
    fn dims(shape: &[usize]) -> Result<[usize; 3]> {
        super::expect_numel("LocalResponseNorm", shape)?;
        match shape {
            [n, c, rest @ ..] if !rest.is_empty() => Ok([*n, *c, rest.iter().product()]),
            _ => Err(Error::shape(
                "LocalResponseNorm",
                "[N, C, H, W] (rank >= 3)",
                shape,
            )),
        }
    }
}

impl<T: Float> Layer<T> for LocalResponseNorm<T> {
    fn kind(&self) -> &'static str {
        "LocalResponseNorm"
    }

    fn describe(&self) -> String {
        format!(
            "size {}, alpha {}, beta {}, k {}",
            self.size, self.alpha, self.beta, self.k
        )
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Self::dims(input)?;
        Ok(input.to_vec())
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let (b, s) = self.normalize(input)?;
        self.cache = Some((input.to_owned(), s));
        Ok(b)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(self.normalize(input)?.0)
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let (input, s) = self
            .cache
            .as_ref()
            .ok_or_else(|| Error::no_cache("LocalResponseNorm"))?;
        expect_shape("LocalResponseNorm", input.shape(), grad_output.shape())?;
        let dims = Self::dims(input.shape())?;
        let (n, beta) = (self.size, T::of(self.beta));
        let (a, db) = (contiguous(input), contiguous(grad_output));
        let t: Vec<T> = db
            .iter()
            .zip(a.iter())
            .zip(s)
            .map(|((&db, &a), &s)| db * a * s.powf(-beta - T::one()))
            .collect();
        let mut acc = vec![T::zero(); a.len()];
        window_sum(&t, dims, (n - 1) / 2, n / 2, T::one(), &mut acc);
        let coef = T::of(2.0 * self.alpha * self.beta / n as f64);
        let da = db
            .iter()
            .zip(a.iter())
            .zip(s.iter().zip(&acc))
            .map(|((&db, &a), (&s, &acc))| db * s.powf(-beta) - coef * a * acc)
            .collect();
        Ok(from_vec(input.shape(), da))
    }
}

impl<T: Float> LocalResponseNorm<T> {
    /// The output `b` and the scale `s` of the forward formula.
    fn normalize(&self, input: &Tensor<T>) -> Result<(Tensor<T>, Vec<T>)> {
        let dims = Self::dims(input.shape())?;
        let (n, beta) = (self.size, T::of(self.beta));
        let a = contiguous(input);
        let sq: Vec<T> = a.iter().map(|&v| v * v).collect();
        let mut s = vec![T::of(self.k); a.len()];
        window_sum(
            &sq,
            dims,
            n / 2,
            (n - 1) / 2,
            T::of(self.alpha / n as f64),
            &mut s,
        );
        let b = a.iter().zip(&s).map(|(&a, &s)| a * s.powf(-beta)).collect();
        Ok((from_vec(input.shape(), b), s))
    }
}

/// `out[c] += coef · Σ_{c' = c-before}^{c+after} v[c']` over the channels of `[N, C, inner]`
/// slices, treating channels outside `[0, C)` as zero. Each term adds a whole contiguous row.
// Indexing: `dims` is the validated shape of the tensor `v` and `out` were made from (both
// hold `N·C·inner` values), and every row read or written is a channel in `[0, C)`.
#[allow(clippy::indexing_slicing)]
fn window_sum<T: Float>(
    v: &[T],
    dims: [usize; 3],
    before: usize,
    after: usize,
    coef: T,
    out: &mut [T],
) {
    let [n, c, inner] = dims;
    for b in 0..n {
        for ch in 0..c {
            let dst = &mut out[(b * c + ch) * inner..][..inner];
            for src_ch in ch.saturating_sub(before)..(ch + after + 1).min(c) {
                let src = &v[(b * c + src_ch) * inner..][..inner];
                for (o, &x) in dst.iter_mut().zip(src) {
                    *o += coef * x;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};
    use crate::testutil::assert_f32_matches_f64;
    use crate::testutil::{assert_close, parity};

    #[test]
    fn gradient_matches_finite_differences() {
        // (size, alpha, beta, k, shape, input scale): odd, even, size 1, window wider than C.
        let cases = [
            (5, 1e-4, 0.75, 2.0, vec![2, 8, 3, 3], 10.0),
            (4, 0.1, 0.75, 1.0, vec![1, 6, 2, 3], 2.0),
            (2, 0.5, 0.6, 1.5, vec![2, 5, 2, 2], 1.5),
            (1, 0.3, 0.75, 1.0, vec![2, 3, 2, 2], 2.0),
            (7, 0.2, 1.3, 0.5, vec![1, 4, 3, 1], 1.0),
            (3, 0.05, 0.75, 1.0, vec![2, 4, 5], 3.0),
        ];
        for (seed, (size, alpha, beta, k, shape, scale)) in cases.into_iter().enumerate() {
            let x = random_tensor(&shape, seed as u64) * scale;
            check_layer(
                &mut LocalResponseNorm::new(
                    LocalResponseNormConfig::new(size)
                        .alpha(alpha)
                        .beta(beta)
                        .k(k),
                )
                .unwrap(),
                &x,
                GradCheck::default(),
            )
            .unwrap();
        }
    }

    #[test]
    fn even_window_by_hand() {
        // n = 2: window(c) = [c-1, c]. One pixel, channels [1, 2, 3].
        let x = from_vec(&[1, 3, 1, 1], vec![1.0, 2.0, 3.0]);
        let (alpha, beta, k) = (0.5, 0.75, 1.0);
        let y =
            LocalResponseNorm::new(LocalResponseNormConfig::new(2).alpha(alpha).beta(beta).k(k))
                .unwrap()
                .forward(&x)
                .unwrap();
        let s = [
            k + alpha / 2.0 * 1.0,
            k + alpha / 2.0 * (1.0 + 4.0),
            k + alpha / 2.0 * (4.0 + 9.0),
        ];
        let want: Vec<f64> = (0..3)
            .map(|c| x[[0, c, 0, 0]] * f64::powf(s[c], -beta))
            .collect();
        for (c, w) in want.iter().enumerate() {
            assert!((y[[0, c, 0, 0]] - w).abs() < 1e-15, "channel {c}");
        }
        // size 1 with alpha 0 and k 1 is the identity.
        let x = random_tensor(&[2, 3, 2, 2], 1);
        assert_eq!(
            LocalResponseNorm::new(LocalResponseNormConfig::new(1).alpha(0.0))
                .unwrap()
                .forward(&x)
                .unwrap(),
            x
        );
    }

    #[test]
    fn paper_alpha_is_n_times_pytorch_alpha() {
        let x = from_vec(&[1, 1, 1, 1], vec![3.0]);
        let y = LocalResponseNorm::new(LocalResponseNormConfig::new(5).alpha(5e-4).k(2.0))
            .unwrap()
            .forward(&x)
            .unwrap();
        let paper = 3.0 / f64::powf(2.0 + 1e-4 * 9.0, 0.75);
        assert!((y[[0, 0, 0, 0]] - paper).abs() < 1e-15);
        let l = LocalResponseNorm::<f32>::new(LocalResponseNormConfig::new(5).k(2.0)).unwrap();
        assert_eq!(l.describe(), "size 5, alpha 0.0001, beta 0.75, k 2");
        assert_eq!(l.kind(), "LocalResponseNorm");
    }

    #[test]
    fn f32_agrees_with_f64() {
        let x = random_tensor(&[2, 6, 3, 3], 3) * 5.0;
        let grad = |shape: &[usize]| random_tensor(shape, 4);
        assert_f32_matches_f64(
            &mut LocalResponseNorm::<f64>::new(LocalResponseNormConfig::new(4).alpha(0.1)).unwrap(),
            &mut LocalResponseNorm::<f32>::new(LocalResponseNormConfig::new(4).alpha(0.1)).unwrap(),
            &x,
            grad,
            1e-5,
        );
    }

    #[test]
    fn errors() {
        for (size, alpha, beta, k) in [
            (0, 1e-4, 0.75, 2.0),
            (5, f64::NAN, 0.75, 2.0),
            (5, 1e-4, 0.75, 0.0),
            (5, -1.0, 0.75, 1.0),
        ] {
            assert!(matches!(
                LocalResponseNorm::<f64>::new(
                    LocalResponseNormConfig::new(size)
                        .alpha(alpha)
                        .beta(beta)
                        .k(k)
                ),
                Err(Error::InvalidConfig { .. })
            ));
        }
        let mut l = LocalResponseNorm::<f64>::new(LocalResponseNormConfig::new(5).k(2.0)).unwrap();
        assert!(matches!(
            l.backward(&random_tensor(&[1, 2, 2, 2], 0)),
            Err(Error::BackwardBeforeForward { .. })
        ));
        let err = l.forward(&random_tensor(&[4, 10], 0)).unwrap_err();
        assert!(err.to_string().contains("LocalResponseNorm"), "{err}");
        l.forward(&random_tensor(&[1, 2, 2, 2], 0)).unwrap();
        assert!(matches!(
            l.backward(&random_tensor(&[1, 2, 2, 3], 0)),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn matches_pytorch() {
        for i in 0..4 {
            let file = format!("local_response_norm_{i:03}");
            let (cfg, t) = parity(&file);
            let f = |key: &str| cfg[key].as_f64().unwrap();
            let mut l = LocalResponseNorm::new(
                LocalResponseNormConfig::new(cfg["size"].as_u64().unwrap() as usize)
                    .alpha(f("alpha"))
                    .beta(f("beta"))
                    .k(f("k")),
            )
            .unwrap();
            assert_close(&file, &l.forward(&t["input"]).unwrap(), &t["output"]);
            assert_close(
                &file,
                &l.backward(&t["grad_output"]).unwrap(),
                &t["grad_input"],
            );
        }
    }
}
