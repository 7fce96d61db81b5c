use super::{cached, expect_shape};
use crate::error::Result;
use crate::layer::Layer;
use crate::tensor::{Float, Tensor};

/// Logistic sigmoid, LeNet-era squashing to `(0, 1)`.
///
/// ```text
/// forward:  y = 1 / (1 + exp(-x))          (as exp(x) / (1 + exp(x)) for x < 0: no overflow)
/// backward: dx = dy · y · (1 - y)
/// ```
#[derive(Clone, Debug, Default)]
pub struct Sigmoid<T: Float> {
    output: Option<Tensor<T>>,
}

impl<T: Float> Sigmoid<T> {
    /// A sigmoid layer.
    pub fn new() -> Self {
        Sigmoid { output: None }
    }
}

impl<T: Float> Layer<T> for Sigmoid<T> {
    fn kind(&self) -> &'static str {
        "Sigmoid"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        super::expect_numel("Sigmoid", input)?;
        Ok(input.to_vec())
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let y = self.infer(input)?;
        self.output = Some(y.clone());
        Ok(y)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(input.mapv(|x| {
            if x >= T::zero() {
                T::one() / (T::one() + (-x).exp())
            } else {
                let e = x.exp();
                e / (T::one() + e)
            }
        }))
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let y = cached(&self.output, "Sigmoid")?;
        expect_shape("Sigmoid", y.shape(), grad_output.shape())?;
        let mut dx = grad_output.to_owned();
        dx.zip_mut_with(y, |d, &y| *d *= y * (T::one() - y));
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Tanh;
    use super::*;
    use crate::error::Error;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};
    use crate::tensor::from_vec;
    use crate::testutil::assert_f32_matches_f64;
    use crate::testutil::{assert_close, parity};

    #[test]
    fn gradient_matches_finite_differences() {
        for (seed, shape) in [(0, vec![2, 3, 4, 5]), (1, vec![7, 3]), (2, vec![1, 1])] {
            let x = random_tensor(&shape, seed) * 3.0;
            check_layer(&mut Sigmoid::new(), &x, GradCheck::default()).unwrap();
        }
    }

    #[test]
    fn values_by_hand_and_extremes() {
        let x = from_vec(&[5], vec![0.0, 2.0, -2.0, 800.0, -800.0]);
        let y = Sigmoid::new().forward(&x).unwrap();
        assert_eq!(y[0], 0.5);
        assert!((y[1] - 1.0 / (1.0 + (-2f64).exp())).abs() < 1e-16);
        assert!((y[1] + y[2] - 1.0).abs() < 1e-15);
        assert_eq!((y[3], y[4]), (1.0, 0.0));
        assert!(y.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn f32_agrees_with_f64() {
        let x = random_tensor(&[2, 3, 4], 1) * 3.0;
        let grad = |shape: &[usize]| random_tensor(shape, 2);
        assert_f32_matches_f64(
            &mut Sigmoid::<f64>::new(),
            &mut Sigmoid::<f32>::new(),
            &x,
            grad,
            1e-6,
        );
    }

    #[test]
    fn errors() {
        let mut l = Sigmoid::<f64>::new();
        assert!(matches!(
            l.backward(&random_tensor(&[2, 2], 0)),
            Err(Error::BackwardBeforeForward { .. })
        ));
        l.forward(&random_tensor(&[2, 2], 0)).unwrap();
        assert!(matches!(
            l.backward(&random_tensor(&[2, 3], 0)),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn matches_pytorch() {
        for file in ["sigmoid_000", "sigmoid_001"] {
            let (_, t) = parity(file);
            let mut l = Sigmoid::new();
            assert_close(file, &l.forward(&t["input"]).unwrap(), &t["output"]);
            assert_close(
                file,
                &l.backward(&t["grad_output"]).unwrap(),
                &t["grad_input"],
            );
        }
    }

    #[test]
    fn tanh_matches_pytorch() {
        for file in ["tanh_000", "tanh_001"] {
            let (_, t) = parity(file);
            let mut l = Tanh::new();
            assert_close(file, &l.forward(&t["input"]).unwrap(), &t["output"]);
            assert_close(
                file,
                &l.backward(&t["grad_output"]).unwrap(),
                &t["grad_input"],
            );
        }
    }
}
