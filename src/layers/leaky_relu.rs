use super::{cached, expect_shape};
use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::tensor::{Float, Tensor};

/// Leaky rectified linear unit with slope `a = negative_slope` for negative inputs.
///
/// ```text
/// forward:  y = x      if x > 0,   a · x  otherwise
/// backward: dx = dy    if x > 0,   a · dy otherwise      (slope a at exactly x = 0, as PyTorch)
/// ```
///
/// NaN propagates as in PyTorch: `y = NaN` for `x = NaN` and `dx = a · dy` there (PyTorch's
/// backward tests `x > 0`, which NaN fails).
///
/// Any finite slope is accepted, including slopes above 1 and negative ones, so the input (not the
/// output) is cached.
#[derive(Clone, Debug)]
pub struct LeakyReLU<T: Float> {
    negative_slope: f64,
    input: Option<Tensor<T>>,
}

/// How to build a [`LeakyReLU`]: the slope for negative inputs (PyTorch's default 0.01).
///
/// ```
/// use convnet::layers::LeakyReLUConfig;
/// assert_eq!(LeakyReLUConfig::new().negative_slope, 0.01);
/// assert_eq!(LeakyReLUConfig::new().negative_slope(0.2).negative_slope, 0.2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LeakyReLUConfig {
    /// Slope `a` for negative inputs (default 0.01); any finite value.
    pub negative_slope: f64,
}

impl Default for LeakyReLUConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl LeakyReLUConfig {
    /// PyTorch's default slope, 0.01.
    pub fn new() -> Self {
        LeakyReLUConfig {
            negative_slope: 0.01,
        }
    }

    /// Sets the slope for negative inputs.
    pub fn negative_slope(mut self, negative_slope: f64) -> Self {
        self.negative_slope = negative_slope;
        self
    }
}

impl<T: Float> LeakyReLU<T> {
    /// A leaky ReLU, or [`Error::InvalidConfig`] for a slope that is not finite.
    pub fn new(cfg: LeakyReLUConfig) -> Result<Self> {
        let negative_slope = cfg.negative_slope;
        if !negative_slope.is_finite() {
            return Err(Error::config(
                "LeakyReLU",
                format!("negative_slope must be finite, got {negative_slope}"),
            ));
        }
        Ok(LeakyReLU {
            negative_slope,
            input: None,
        })
    }

    /// The slope for negative inputs.
    pub fn negative_slope(&self) -> f64 {
        self.negative_slope
    }
}

impl<T: Float> Layer<T> for LeakyReLU<T> {
    fn kind(&self) -> &'static str {
        "LeakyReLU"
    }

    fn describe(&self) -> String {
        format!("negative_slope {}", self.negative_slope)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        super::expect_numel("LeakyReLU", input)?;
        Ok(input.to_vec())
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let y = self.infer(input)?;
        self.input = Some(input.to_owned());
        Ok(y)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let a = T::of(self.negative_slope);
        Ok(input.mapv(|x| if x > T::zero() { x } else { a * x }))
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let x = cached(&self.input, "LeakyReLU")?;
        expect_shape("LeakyReLU", x.shape(), grad_output.shape())?;
        let a = T::of(self.negative_slope);
        let mut dx = grad_output.to_owned();
        dx.zip_mut_with(x, |d, &x| {
            // Not `x <= 0`: NaN takes the slope too, as in PyTorch.
            if x.partial_cmp(&T::zero()) != Some(std::cmp::Ordering::Greater) {
                *d *= a
            }
        });
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ReLU;
    use super::*;
    use crate::error::Error;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};

    #[test]
    fn slopes_must_be_finite() {
        for slope in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let cfg = LeakyReLUConfig::new().negative_slope(slope);
            assert!(matches!(
                LeakyReLU::<f32>::new(cfg),
                Err(Error::InvalidConfig { .. })
            ));
        }
        let default = LeakyReLU::<f32>::new(LeakyReLUConfig::default()).unwrap();
        assert_eq!(default.negative_slope(), 0.01);
    }
    use crate::tensor::from_vec;
    use crate::testutil::assert_f32_matches_f64;
    use crate::testutil::{assert_close, parity};

    #[test]
    fn gradient_matches_finite_differences() {
        let cases = [
            (0.01, vec![2, 3, 4, 5]),
            (0.2, vec![7, 3]),
            (1.7, vec![1, 1]),
            (-0.5, vec![3, 2, 2]),
            (0.0, vec![4]),
        ];
        for (seed, (slope, shape)) in cases.into_iter().enumerate() {
            check_layer(
                &mut LeakyReLU::new(LeakyReLUConfig::new().negative_slope(slope)).unwrap(),
                &random_tensor(&shape, seed as u64),
                GradCheck::default(),
            )
            .unwrap();
        }
    }

    #[test]
    fn values_by_hand() {
        let x = from_vec(&[4], vec![-2.0, 0.0, 0.5, 3.0]);
        let mut l = LeakyReLU::new(LeakyReLUConfig::new().negative_slope(1.7)).unwrap();
        assert_eq!(
            l.forward(&x).unwrap().into_raw_vec_and_offset().0,
            vec![-3.4, 0.0, 0.5, 3.0]
        );
        let dx = l.backward(&from_vec(&[4], vec![1.0; 4])).unwrap();
        assert_eq!(dx.into_raw_vec_and_offset().0, vec![1.7, 1.7, 1.0, 1.0]);
        assert_eq!(Layer::<f64>::describe(&l), "negative_slope 1.7");
        assert_eq!(Layer::<f64>::kind(&l), "LeakyReLU");
    }

    #[test]
    fn f32_agrees_with_f64() {
        let x = random_tensor(&[2, 3, 4], 1);
        let grad = |shape: &[usize]| random_tensor(shape, 2);
        assert_f32_matches_f64(
            &mut LeakyReLU::<f64>::new(LeakyReLUConfig::new().negative_slope(0.3)).unwrap(),
            &mut LeakyReLU::<f32>::new(LeakyReLUConfig::new().negative_slope(0.3)).unwrap(),
            &x,
            grad,
            1e-6,
        );
    }

    #[test]
    fn errors() {
        let mut l = LeakyReLU::<f64>::new(LeakyReLUConfig::new().negative_slope(0.1)).unwrap();
        assert!(matches!(
            l.backward(&random_tensor(&[2, 2], 0)),
            Err(Error::BackwardBeforeForward { .. })
        ));
        l.forward(&random_tensor(&[2, 2], 0)).unwrap();
        assert!(matches!(
            l.backward(&random_tensor(&[4], 0)),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn matches_pytorch() {
        for file in ["leaky_relu_000", "leaky_relu_001"] {
            let (cfg, t) = parity(file);
            let mut l = LeakyReLU::new(
                LeakyReLUConfig::new().negative_slope(cfg["negative_slope"].as_f64().unwrap()),
            )
            .unwrap();
            assert_close(file, &l.forward(&t["input"]).unwrap(), &t["output"]);
            assert_close(
                file,
                &l.backward(&t["grad_output"]).unwrap(),
                &t["grad_input"],
            );
        }
    }

    #[test]
    fn relu_matches_pytorch() {
        for file in ["relu_000", "relu_001"] {
            let (_, t) = parity(file);
            let mut l = ReLU::new();
            assert_close(file, &l.forward(&t["input"]).unwrap(), &t["output"]);
            assert_close(
                file,
                &l.backward(&t["grad_output"]).unwrap(),
                &t["grad_input"],
            );
        }
    }
}
