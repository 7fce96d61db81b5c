use super::expect_shape;
use crate::error::{Error, Result};
use crate::init::layer_rng;
use crate::layer::{Layer, Mode};
use crate::rng::Rng64;
use crate::tensor::{Float, Tensor};

/// Inverted dropout (Srivastava et al. 2014, as `nn.Dropout`): in training each element is
/// zeroed with probability `p` and the survivors are scaled by `1/(1-p)`, so that evaluation
/// is the identity.
///
/// ```text
/// train:    mask_j = 0 with probability p, else 1/(1-p)       (drawn fresh each forward)
/// forward:  y = x · mask                  eval: y = x
/// backward: dx = dy · mask                eval: dx = dy      (the mask of the last forward)
/// ```
///
/// The mask is drawn from the layer's own [`Rng64`], seeded by [`DropoutConfig::seed`] or
/// otherwise forked from the global generator ([`crate::init::layer_rng`]). Its state can be
/// saved and restored ([`Dropout::rng`], [`Dropout::set_rng`]) so a resumed run draws the same
/// masks. `p = 0` is the identity and draws nothing; `p = 1` zeroes everything.
#[derive(Clone, Debug)]
pub struct Dropout<T: Float> {
    p: f64,
    rng: Rng64,
    mode: Mode,
    cache: Option<Cache<T>>,
}

/// What the last forward did: nothing (eval, `p = 0`) or multiply by a mask.
#[derive(Clone, Debug)]
enum Cache<T: Float> {
    Identity(Vec<usize>),
    Mask(Tensor<T>),
}

/// How to build a [`Dropout`]: the drop probability (PyTorch's default 0.5) and an optional
/// seed for the masks.
///
/// ```
/// use convnet::layers::DropoutConfig;
/// let cfg = DropoutConfig::new().p(0.25).seed(7);
/// assert_eq!((cfg.p, cfg.seed), (0.25, Some(7)));
/// assert_eq!(DropoutConfig::default().p, 0.5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutConfig {
    /// Probability of zeroing an element, in `[0, 1]` (default 0.5).
    pub p: f64,
    /// Seed of the masks' generator; `None` forks the global generator
    /// ([`crate::init::manual_seed`]).
    pub seed: Option<u64>,
}

impl Default for DropoutConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl DropoutConfig {
    /// PyTorch's default: `p = 0.5`, masks from the global generator.
    pub fn new() -> Self {
        DropoutConfig { p: 0.5, seed: None }
    }

    /// Sets the drop probability.
    pub fn p(mut self, p: f64) -> Self {
        self.p = p;
        self
    }

    /// Draws the masks from a generator seeded with `seed` instead of the global one.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

impl<T: Float> Dropout<T> {
    /// Dropout in training mode, or [`Error::InvalidConfig`] when `p` is not in `[0, 1]`.
    pub fn new(cfg: DropoutConfig) -> Result<Self> {
        let p = cfg.p;
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::config(
                "Dropout",
                format!("p must be in [0, 1], got {p}"),
            ));
        }
        Ok(Dropout {
            p,
            rng: layer_rng(cfg.seed),
            mode: Mode::Train,
            cache: None,
        })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// The generator the next mask is drawn from (for checkpoints).
    pub fn rng(&self) -> &Rng64 {
        &self.rng
    }

    /// Replaces the generator (to resume from a checkpoint).
    pub fn set_rng(&mut self, rng: Rng64) {
        self.rng = rng;
    }

    /// The mask of the last forward (`0` or `1/(1-p)` per element), or `None` when it was the
    /// identity (eval mode, `p = 0`) or no forward ran yet.
    pub fn mask(&self) -> Option<&Tensor<T>> {
        match &self.cache {
            Some(Cache::Mask(m)) => Some(m),
            _ => None,
        }
    }
}

impl<T: Float> Layer<T> for Dropout<T> {
    fn kind(&self) -> &'static str {
        "Dropout"
    }

    fn describe(&self) -> String {
        format!("p {}", self.p)
    }

    fn visit_rngs_mut(&mut self, f: &mut dyn FnMut(&str, &mut Rng64)) {
        f("rng", &mut self.rng);
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        super::expect_numel("Dropout", input)?;
        Ok(input.to_vec())
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        if self.mode == Mode::Eval || self.p == 0.0 {
            self.cache = Some(Cache::Identity(input.shape().to_vec()));
            return Ok(input.to_owned());
        }
        let (p, keep) = (self.p, T::of(1.0 / (1.0 - self.p)));
        let rng = &mut self.rng;
        let mask = Tensor::from_shape_simple_fn(input.raw_dim(), || {
            if rng.uniform() < p {
                T::zero()
            } else {
                keep
            }
        });
        let y = input * &mask;
        self.cache = Some(Cache::Mask(mask));
        Ok(y)
    }

    /// The identity: evaluation mode drops nothing.
    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(input.to_owned())
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        match &self.cache {
            None => Err(Error::no_cache("Dropout")),
            Some(Cache::Identity(shape)) => {
                expect_shape("Dropout", shape, grad_output.shape())?;
                Ok(grad_output.to_owned())
            }
            Some(Cache::Mask(mask)) => {
                expect_shape("Dropout", mask.shape(), grad_output.shape())?;
                Ok(grad_output * mask)
            }
        }
    }

    fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};

    /// Dropout that restarts its generator before every forward, so that every forward of a
    /// gradient check draws the same mask.
    struct FixedMask(Dropout<f64>, u64);

    impl Layer<f64> for FixedMask {
        fn kind(&self) -> &'static str {
            "FixedMask"
        }
        fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
            self.0.output_shape(input)
        }
        fn forward(&mut self, input: &Tensor<f64>) -> Result<Tensor<f64>> {
            self.0.set_rng(Rng64::seed(self.1));
            self.0.forward(input)
        }
        fn infer(&self, input: &Tensor<f64>) -> Result<Tensor<f64>> {
            self.0.infer(input)
        }
        fn backward(&mut self, grad_output: &Tensor<f64>) -> Result<Tensor<f64>> {
            self.0.backward(grad_output)
        }
    }

    #[test]
    fn gradient_uses_the_forward_mask() {
        for (seed, (p, shape)) in [
            (0.5, vec![4, 6]),
            (0.2, vec![2, 3, 4, 4]),
            (0.9, vec![1, 7]),
            (0.0, vec![3]),
        ]
        .into_iter()
        .enumerate()
        {
            let mut layer = FixedMask(
                Dropout::new(DropoutConfig::new().p(p)).unwrap(),
                seed as u64,
            );
            check_layer(
                &mut layer,
                &random_tensor(&shape, seed as u64),
                GradCheck::default(),
            )
            .unwrap();
        }
        // Directly: the gradient of ones is the mask that produced y = x · mask.
        let mut d = Dropout::<f64>::new(DropoutConfig::new().p(0.4).seed(3)).unwrap();
        let x = random_tensor(&[5, 8], 1);
        let y = d.forward(&x).unwrap();
        let dx = d.backward(&Tensor::ones(x.raw_dim())).unwrap();
        assert_eq!(&dx, d.mask().unwrap());
        assert_eq!(y, &x * &dx);
    }

    #[test]
    fn train_drops_about_p_and_scales_survivors() {
        for p in [0.1, 0.5, 0.8] {
            let mut d = Dropout::<f64>::new(DropoutConfig::new().p(p).seed(7)).unwrap();
            let x = Tensor::from_elem(ndarray::IxDyn(&[100, 200]), 2.0);
            let y = d.forward(&x).unwrap();
            let zeros = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
            assert!((zeros - p).abs() < 0.015, "p {p}: dropped {zeros}");
            assert!(y
                .iter()
                .all(|&v| v == 0.0 || (v - 2.0 / (1.0 - p)).abs() < 1e-12));
        }
        let mut d = Dropout::<f32>::new(DropoutConfig::new().p(1.0)).unwrap();
        assert!(d
            .forward(&Tensor::ones(ndarray::IxDyn(&[3, 3])))
            .unwrap()
            .iter()
            .all(|&v| v == 0.0));
    }

    #[test]
    fn eval_and_p_zero_are_the_identity() {
        let x = random_tensor(&[3, 4], 0);
        let mut d = Dropout::new(DropoutConfig::new().p(0.5)).unwrap();
        d.set_mode(Mode::Eval);
        assert_eq!(d.forward(&x).unwrap(), x);
        assert_eq!(d.backward(&x).unwrap(), x);
        assert!(d.mask().is_none());
        let mut d = Dropout::new(DropoutConfig::new().p(0.0)).unwrap();
        assert_eq!(d.forward(&x).unwrap(), x);
        assert_eq!(d.backward(&x).unwrap(), x);
    }

    #[test]
    fn seeds_and_rng_state_repeat_masks() {
        let x = random_tensor(&[10, 10], 0);
        let mut a = Dropout::<f64>::new(DropoutConfig::new().p(0.5).seed(42)).unwrap();
        let mut b = Dropout::<f64>::new(DropoutConfig::new().p(0.5).seed(42)).unwrap();
        let first = a.forward(&x).unwrap();
        assert_eq!(first, b.forward(&x).unwrap());
        let saved = a.rng().clone();
        let second = a.forward(&x).unwrap();
        assert_ne!(first, second, "a fresh mask is drawn each forward");
        let mut c = Dropout::<f64>::new(DropoutConfig::new().p(0.5)).unwrap();
        c.set_rng(saved);
        assert_eq!(c.forward(&x).unwrap(), second);
        // f32 with the same seed draws the same mask.
        let mut d = Dropout::<f32>::new(DropoutConfig::new().p(0.5).seed(42)).unwrap();
        let y32 = d.forward(&x.mapv(|v| v as f32)).unwrap();
        assert!(first
            .iter()
            .zip(&y32)
            .all(|(p, q)| (p - *q as f64).abs() < 1e-6));
    }

    #[test]
    fn errors() {
        for p in [-0.1, 1.5, f64::NAN] {
            assert!(matches!(
                Dropout::<f64>::new(DropoutConfig::new().p(p)),
                Err(Error::InvalidConfig { .. })
            ));
        }
        let mut d = Dropout::<f64>::new(DropoutConfig::new().p(0.5)).unwrap();
        assert!(matches!(
            d.backward(&random_tensor(&[2], 0)),
            Err(Error::BackwardBeforeForward { .. })
        ));
        d.forward(&random_tensor(&[2, 3], 0)).unwrap();
        assert!(matches!(
            d.backward(&random_tensor(&[3, 2], 0)),
            Err(Error::ShapeMismatch { .. })
        ));
        d.set_mode(Mode::Eval);
        d.forward(&random_tensor(&[2, 3], 0)).unwrap();
        assert!(matches!(
            d.backward(&random_tensor(&[6], 0)),
            Err(Error::ShapeMismatch { .. })
        ));
        assert_eq!(Layer::<f64>::describe(&d), "p 0.5");
    }
}
