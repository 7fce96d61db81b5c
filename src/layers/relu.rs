use super::{cached, expect_shape};
use crate::error::Result;
use crate::kernels::elementwise;
use crate::layer::{Epilogue, Layer};
use crate::tensor::{contiguous, zeros, Float, Tensor};

/// Rectified linear unit.
///
/// ```text
/// forward:  y = max(0, x)          (NaN stays NaN, as PyTorch)
/// backward: dx = dy · [x > 0]        (0 at exactly x = 0, as PyTorch)
/// ```
///
/// NaN propagates as in PyTorch: `ReLU(NaN) = NaN`, and the gradient at a NaN input passes
/// through (PyTorch's `threshold_backward` zeroes only where `y <= 0`), so a training run
/// sees a NaN instead of a silently finite result.
///
/// The output is cached: `y > 0` exactly where `x > 0`, and `y` is NaN exactly where `x` is.
#[derive(Clone, Debug, Default)]
pub struct ReLU<T: Float> {
    output: Option<Tensor<T>>,
}

impl<T: Float> ReLU<T> {
    /// A ReLU layer.
    pub fn new() -> Self {
        ReLU { output: None }
    }
}

impl<T: Float> Layer<T> for ReLU<T> {
    fn kind(&self) -> &'static str {
        "ReLU"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        super::expect_numel("ReLU", input)?;
        Ok(input.to_vec())
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let y = self.infer(input)?;
        self.output = Some(y.clone());
        Ok(y)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let x = contiguous(input);
        let mut y = zeros(input.shape());
        let ys = super::standard_mut(&mut y);
        elementwise::map(&x, ys, elementwise::relu);
        Ok(y)
    }

    fn epilogue(&self) -> Option<Epilogue<T>> {
        Some(Epilogue::Relu)
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let y = cached(&self.output, "ReLU")?;
        expect_shape("ReLU", y.shape(), grad_output.shape())?;
        let (dy, y) = (contiguous(grad_output), contiguous(y));
        let mut dx = zeros(grad_output.shape());
        let dxs = super::standard_mut(&mut dx);
        elementwise::zip_map(
            &dy,
            &y,
            dxs,
            |d, y| if y <= T::zero() { T::zero() } else { d },
        );
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};

    #[test]
    fn gradient_matches_finite_differences() {
        for seed in 0..3 {
            let x = random_tensor(&[2, 3, 4, 5], seed);
            check_layer(&mut ReLU::new(), &x, GradCheck::default()).unwrap();
        }
    }

    #[test]
    fn backward_before_forward_is_an_error() {
        let g = random_tensor(&[2, 2], 0);
        assert!(ReLU::<f64>::new().backward(&g).is_err());
    }
}
