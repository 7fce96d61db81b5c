use super::{cached, expect_shape};
use crate::error::Result;
use crate::layer::Layer;
use crate::tensor::{Float, Tensor};

/// Hyperbolic tangent, LeNet-5's squashing function.
///
/// ```text
/// forward:  y = tanh(x)
/// backward: dx = dy · (1 - y²)
/// ```
#[derive(Clone, Debug, Default)]
pub struct Tanh<T: Float> {
    output: Option<Tensor<T>>,
}

impl<T: Float> Tanh<T> {
    /// A tanh layer.
    pub fn new() -> Self {
        Tanh { output: None }
    }
}

impl<T: Float> Layer<T> for Tanh<T> {
    fn kind(&self) -> &'static str {
        "Tanh"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        super::expect_numel("Tanh", input)?;
        Ok(input.to_vec())
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let y = self.infer(input)?;
        self.output = Some(y.clone());
        Ok(y)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(input.mapv(T::tanh))
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let y = cached(&self.output, "Tanh")?;
        expect_shape("Tanh", y.shape(), grad_output.shape())?;
        let mut dx = grad_output.to_owned();
        dx.zip_mut_with(y, |d, &y| *d *= T::one() - y * y);
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};

    #[test]
    fn gradient_matches_finite_differences() {
        for (seed, shape) in [(0, vec![2, 3, 4, 5]), (1, vec![7, 3]), (2, vec![1, 1])] {
            check_layer(
                &mut Tanh::new(),
                &random_tensor(&shape, seed),
                GradCheck::default(),
            )
            .unwrap();
        }
    }
}
