use super::softmax::{dim1_blocks, for_each_dim1, max_and_sum_exp_dim1, sum_dim1};
use super::{cached, expect_shape};
use crate::error::Result;
use crate::layer::Layer;
use crate::tensor::{contiguous, from_vec, Float, Tensor};

/// Log-softmax over dim 1 (classes of `[N, C]`, channels of each pixel of `[N, C, H, W]`;
/// any rank ≥ 2), computed stably so that logits of ±1000 give finite log-probabilities.
///
/// ```text
/// forward:  y_c = x_c - m - log Σ_c' exp(x_c' - m)        m = max_c x_c
/// backward: dx_c = dy_c - softmax_c · Σ_c' dy_c'          softmax_c = exp(y_c)
/// ```
#[derive(Clone, Debug, Default)]
pub struct LogSoftmax<T: Float> {
    output: Option<Tensor<T>>,
}

impl<T: Float> LogSoftmax<T> {
    /// A log-softmax over dim 1.
    pub fn new() -> Self {
        LogSoftmax { output: None }
    }
}

impl<T: Float> Layer<T> for LogSoftmax<T> {
    fn kind(&self) -> &'static str {
        "LogSoftmax"
    }

    fn describe(&self) -> String {
        "over dim 1".to_string()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        dim1_blocks("LogSoftmax", input)?;
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
        let dims = dim1_blocks("LogSoftmax", input.shape())?;
        let x = contiguous(input);
        let (m, s) = max_and_sum_exp_dim1(&x, dims);
        let mut y = vec![T::zero(); x.len()];
        for_each_dim1(dims, |j, r| y[j] = (x[j] - m[r]) - s[r].ln());
        Ok(from_vec(input.shape(), y))
    }

    // Indexing: `dims` comes from `dim1_blocks` of the tensor's own shape, so every element
    // index `j` is below `N·C·inner` (the tensor's length) and every slot `r` below `N·inner`
    // (the length of the per-slot vectors).
    #[allow(clippy::indexing_slicing)]
    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let y = cached(&self.output, "LogSoftmax")?;
        expect_shape("LogSoftmax", y.shape(), grad_output.shape())?;
        let dims = dim1_blocks("LogSoftmax", y.shape())?;
        let (y, dy) = (contiguous(y), contiguous(grad_output));
        let total = sum_dim1(dims, |j, _| dy[j]);
        let mut dx = vec![T::zero(); y.len()];
        for_each_dim1(dims, |j, r| dx[j] = dy[j] - y[j].exp() * total[r]);
        Ok(from_vec(grad_output.shape(), dx))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Softmax;
    use super::*;
    use crate::error::Error;
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
            check_layer(&mut LogSoftmax::new(), &x, GradCheck::default()).unwrap();
        }
    }

    #[test]
    fn is_the_log_of_softmax() {
        let x = random_tensor(&[2, 6, 2, 3], 9) * 2.0;
        let y = LogSoftmax::new().forward(&x).unwrap();
        let p = Softmax::new().forward(&x).unwrap();
        assert!(y.iter().zip(&p).all(|(y, p)| (y - p.ln()).abs() < 1e-13));
        let x = from_vec(&[1, 2], vec![0.0, 0.0]);
        let y = LogSoftmax::new().forward(&x).unwrap();
        assert!(y.iter().all(|v| (v + 2f64.ln()).abs() < 1e-15));
    }

    #[test]
    fn huge_logits_stay_finite() {
        let x = from_vec(
            &[2, 3],
            vec![1000.0, -1000.0, 999.0, -1000.0, -1000.0, -1000.0],
        );
        let mut layer = LogSoftmax::new();
        let y = layer.forward(&x).unwrap();
        let dx = layer.backward(&random_tensor(&[2, 3], 1)).unwrap();
        assert!(y.iter().chain(dx.iter()).all(|v| v.is_finite()));
        let lse = 1000.0 + (1.0 + (-1f64).exp()).ln();
        assert!((y[[0, 1]] - (-1000.0 - lse)).abs() < 1e-12);
        assert!((y[[1, 0]] + 3f64.ln()).abs() < 1e-12);
        let x = random_tensor(&[3, 4], 2) * 2.0;
        check_layer(&mut LogSoftmax::new(), &(&x - 1000.0), GradCheck::default()).unwrap();
    }

    #[test]
    fn f32_agrees_with_f64() {
        let x = random_tensor(&[2, 5, 3, 3], 3) * 4.0;
        let grad = |shape: &[usize]| random_tensor(shape, 4);
        assert_f32_matches_f64(
            &mut LogSoftmax::<f64>::new(),
            &mut LogSoftmax::<f32>::new(),
            &x,
            grad,
            1e-5,
        );
    }

    #[test]
    fn errors() {
        let mut layer = LogSoftmax::<f64>::new();
        assert!(matches!(
            layer.backward(&random_tensor(&[2, 3], 0)),
            Err(Error::BackwardBeforeForward { .. })
        ));
        let err = layer.forward(&random_tensor(&[5], 0)).unwrap_err();
        assert!(err.to_string().contains("LogSoftmax"), "{err}");
        layer.forward(&random_tensor(&[2, 3], 0)).unwrap();
        assert!(matches!(
            layer.backward(&random_tensor(&[2, 3, 1], 0)),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn matches_pytorch() {
        for file in ["log_softmax_000", "log_softmax_001"] {
            let (cfg, t) = parity(file);
            assert_eq!(cfg["dim"], 1);
            let mut layer = LogSoftmax::new();
            assert_close(file, &layer.forward(&t["input"]).unwrap(), &t["output"]);
            assert_close(
                file,
                &layer.backward(&t["grad_output"]).unwrap(),
                &t["grad_input"],
            );
        }
    }
}
