use super::{cached, expect_shape};
use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::tensor::{contiguous, from_vec, Float, Tensor};

/// Softmax over dim 1: across the classes of `[N, C]` logits, or across the channels of each
/// pixel of an `[N, C, H, W]` map (any rank ≥ 2 works the same way).
///
/// ```text
/// forward:  y_c = exp(x_c - m) / Σ_c' exp(x_c' - m)        m = max_c x_c (logits of ±1000 are fine)
/// backward: dx_c = y_c · (dy_c - Σ_c' dy_c' · y_c')
/// ```
#[derive(Clone, Debug, Default)]
pub struct Softmax<T: Float> {
    output: Option<Tensor<T>>,
}

impl<T: Float> Softmax<T> {
    /// A softmax over dim 1.
    pub fn new() -> Self {
        Softmax { output: None }
    }
}

impl<T: Float> Layer<T> for Softmax<T> {
    fn kind(&self) -> &'static str {
        "Softmax"
    }

    fn describe(&self) -> String {
        "over dim 1".to_string()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        dim1_blocks("Softmax", input)?;
        Ok(input.to_vec())
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let y = self.infer(input)?;
        self.output = Some(y.clone());
        Ok(y)
    }

    // Indexing: `dims` comes from `dim1_blocks` of the tensor's own shape, so every element
    // index `j` is below `N·C·inner` (the tensor's length) and every slot `r` below `N·inner`
    // (the length of the per-slot vectors).
    #[allow(clippy::indexing_slicing)]
    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let dims = dim1_blocks("Softmax", input.shape())?;
        let x = contiguous(input);
        let (m, s) = max_and_sum_exp_dim1(&x, dims);
        let mut y = vec![T::zero(); x.len()];
        for_each_dim1(dims, |j, r| y[j] = (x[j] - m[r]).exp() / s[r]);
        Ok(from_vec(input.shape(), y))
    }

    // Indexing: `dims` comes from `dim1_blocks` of the tensor's own shape, so every element
    // index `j` is below `N·C·inner` (the tensor's length) and every slot `r` below `N·inner`
    // (the length of the per-slot vectors).
    #[allow(clippy::indexing_slicing)]
    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let y = cached(&self.output, "Softmax")?;
        expect_shape("Softmax", y.shape(), grad_output.shape())?;
        let dims = dim1_blocks("Softmax", y.shape())?;
        let (y, dy) = (contiguous(y), contiguous(grad_output));
        let dot = sum_dim1(dims, |j, _| dy[j] * y[j]);
        let mut dx = vec![T::zero(); y.len()];
        for_each_dim1(dims, |j, r| dx[j] = y[j] * (dy[j] - dot[r]));
        Ok(from_vec(grad_output.shape(), dx))
    }
}

// ---------------------------------------------------------------------------------------------
// Reductions over dim 1, shared with LogSoftmax. A tensor of rank ≥ 2 is viewed as
// `[N, C, inner]` (inner = product of the dims after 1); element `j = (n·C + c)·inner + i`
// reduces into slot `r = n·inner + i`.

/// `[N, C, inner]` for an input of rank ≥ 2, or a shape error naming `layer`.
pub(crate) fn dim1_blocks(layer: &str, shape: &[usize]) -> Result<[usize; 3]> {
    super::expect_numel(layer, shape)?;
    match shape {
        [n, c, rest @ ..] => Ok([*n, *c, rest.iter().product()]),
        _ => Err(Error::shape(
            layer,
            "[N, C, ...] (rank >= 2, reduced over dim 1)",
            shape,
        )),
    }
}

/// Calls `f(j, r)` for every element `j`, with `r` its reduction slot.
pub(crate) fn for_each_dim1(dims: [usize; 3], mut f: impl FnMut(usize, usize)) {
    let [n, c, inner] = dims;
    for b in 0..n {
        for ch in 0..c {
            let row = (b * c + ch) * inner;
            for i in 0..inner {
                f(row + i, b * inner + i);
            }
        }
    }
}

// Indexing in the two helpers below: callers pass `dims` from `dim1_blocks` of the tensor
// they read, so `r < N·inner`, the length of the vectors made here, and `j` is below the
// tensor's length.
#[allow(clippy::indexing_slicing)]
/// `s[r] = Σ_c f(j, r)` over the elements `j` of each reduction slot `r`.
pub(crate) fn sum_dim1<T: Float>(dims: [usize; 3], f: impl Fn(usize, usize) -> T) -> Vec<T> {
    let mut s = vec![T::zero(); dims[0] * dims[2]];
    for_each_dim1(dims, |j, r| s[r] += f(j, r));
    s
}

/// Per reduction slot: the max `m` over channels and `s = Σ_c exp(x_c - m)`, so that
/// `softmax = exp(x - m) / s` and `log_softmax = (x - m) - ln s` never overflow.
#[allow(clippy::indexing_slicing)] // as `sum_dim1` above
pub(crate) fn max_and_sum_exp_dim1<T: Float>(x: &[T], dims: [usize; 3]) -> (Vec<T>, Vec<T>) {
    let mut m = vec![T::neg_infinity(); dims[0] * dims[2]];
    for_each_dim1(dims, |j, r| m[r] = m[r].max(x[j]));
    let s = sum_dim1(dims, |j, r| (x[j] - m[r]).exp());
    (m, s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};
    use crate::testutil::assert_f32_matches_f64;
    use crate::testutil::{assert_close, parity};

    #[test]
    fn gradient_matches_finite_differences() {
        let shapes = [
            vec![4, 10],
            vec![2, 4, 3, 3],
            vec![1, 1],
            vec![1, 5, 2],
            vec![3, 2, 1, 2, 2],
        ];
        for (seed, shape) in shapes.iter().enumerate() {
            let x = random_tensor(shape, seed as u64) * 3.0;
            check_layer(&mut Softmax::new(), &x, GradCheck::default()).unwrap();
        }
    }

    #[test]
    fn rows_sum_to_one_and_match_a_hand_computation() {
        let x = from_vec(&[1, 3], vec![1.0, 2.0, 3.0]);
        let y = Softmax::new().forward(&x).unwrap();
        let e = [1f64.exp(), 2f64.exp(), 3f64.exp()];
        let s: f64 = e.iter().sum();
        for c in 0..3 {
            assert!((y[[0, c]] - e[c] / s).abs() < 1e-15);
        }
        // Per pixel across channels for NCHW.
        let x = random_tensor(&[2, 3, 2, 2], 7);
        let y = Softmax::new().forward(&x).unwrap();
        let sums = y.sum_axis(ndarray::Axis(1));
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-14));
    }

    #[test]
    fn huge_logits_stay_finite() {
        let x = from_vec(
            &[2, 3],
            vec![1000.0, -1000.0, 999.0, -1000.0, -1000.0, -1000.0],
        );
        let mut layer = Softmax::new();
        let y = layer.forward(&x).unwrap();
        let dx = layer.backward(&random_tensor(&[2, 3], 1)).unwrap();
        assert!(y.iter().chain(dx.iter()).all(|v| v.is_finite()));
        let e = (-1f64).exp();
        assert!((y[[0, 0]] - 1.0 / (1.0 + e)).abs() < 1e-15);
        assert_eq!(y[[0, 1]], 0.0);
        assert!((y[[1, 2]] - 1.0 / 3.0).abs() < 1e-15);
        // A large common offset does not change the result or its gradient.
        let x = random_tensor(&[3, 4], 2) * 2.0;
        check_layer(&mut Softmax::new(), &(&x + 1000.0), GradCheck::default()).unwrap();
        let a = Softmax::new().forward(&x).unwrap();
        let b = Softmax::new().forward(&(&x + 1000.0)).unwrap();
        assert!((a - b).iter().all(|d| d.abs() < 1e-12));
    }

    #[test]
    fn f32_agrees_with_f64() {
        let x = random_tensor(&[2, 5, 3, 3], 3) * 4.0;
        let grad = |shape: &[usize]| random_tensor(shape, 4);
        assert_f32_matches_f64(
            &mut Softmax::<f64>::new(),
            &mut Softmax::<f32>::new(),
            &x,
            grad,
            1e-5,
        );
    }

    #[test]
    fn errors() {
        let mut layer = Softmax::<f64>::new();
        assert!(matches!(
            layer.backward(&random_tensor(&[2, 3], 0)),
            Err(Error::BackwardBeforeForward { .. })
        ));
        let err = layer.forward(&random_tensor(&[5], 0)).unwrap_err();
        assert!(err.to_string().contains("Softmax"), "{err}");
        assert!(layer.output_shape(&[5]).is_err());
        layer.forward(&random_tensor(&[2, 3], 0)).unwrap();
        assert!(matches!(
            layer.backward(&random_tensor(&[3, 2], 0)),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn matches_pytorch() {
        for file in ["softmax_000", "softmax_001"] {
            let (cfg, t) = parity(file);
            assert_eq!(cfg["dim"], 1);
            let mut layer = Softmax::new();
            assert_close(file, &layer.forward(&t["input"]).unwrap(), &t["output"]);
            assert_close(
                file,
                &layer.backward(&t["grad_output"]).unwrap(),
                &t["grad_input"],
            );
        }
    }
}
