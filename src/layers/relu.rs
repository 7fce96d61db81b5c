use super::expect_shape;
use crate::error::{Error, Result};
use crate::kernels::elementwise;
use crate::layer::{Epilogue, Layer};
use crate::tensor::{slice_mut, standard, try_filled, Float, Tensor};
use std::marker::PhantomData;

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
/// Backward needs only where the gradient passes: one byte per element is kept (not the
/// output), and a ReLU handed its input by value ([`Layer::forward_owned`]) works in place.
#[derive(Clone, Debug, Default)]
pub struct ReLU<T: Float> {
    /// Shape of the last training input and `keep[i] = 1` where the gradient passes.
    keep: Option<(Vec<usize>, Vec<u8>)>,
    _values: PhantomData<T>,
}

impl<T: Float> ReLU<T> {
    /// A ReLU layer.
    pub fn new() -> Self {
        ReLU {
            keep: None,
            _values: PhantomData,
        }
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
        self.forward_owned(input.as_standard_layout().into_owned())
    }

    fn forward_owned(&mut self, input: Tensor<T>) -> Result<Tensor<T>> {
        self.keep = None;
        let mut y = standard(input);
        let mut keep = try_filled("ReLU", y.len(), 0u8)?;
        elementwise::relu_with_mask(slice_mut(&mut y)?, &mut keep);
        self.keep = Some((y.shape().to_vec(), keep));
        Ok(y)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let mut y = input.as_standard_layout().into_owned();
        elementwise::map_inplace(slice_mut(&mut y)?, elementwise::relu);
        Ok(y)
    }

    fn epilogue(&self) -> Option<Epilogue<T>> {
        Some(Epilogue::Relu)
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        self.backward_owned(grad_output.as_standard_layout().into_owned())
    }

    fn backward_owned(&mut self, grad_output: Tensor<T>) -> Result<Tensor<T>> {
        let (shape, keep) = self.keep.as_ref().ok_or_else(|| Error::no_cache("ReLU"))?;
        expect_shape("ReLU", shape, grad_output.shape())?;
        let mut dx = standard(grad_output);
        elementwise::apply_mask(slice_mut(&mut dx)?, keep);
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
