//! Weight initialisation: Kaiming (He) and Xavier (Glorot), uniform and normal.
//!
//! `fan_in` of a conv weight `[out, in/groups, kh, kw]` is `in/groups * kh * kw`, and
//! `fan_out` is `out * kh * kw`, as PyTorch computes them.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::error::{Error, Result};
use crate::rng::Rng64;
use crate::tensor::{checked_numel, try_filled, Float, Tensor};
use ndarray::IxDyn;
use rand_distr::{Distribution, Normal, Uniform};
use std::cell::RefCell;

thread_local! {
    /// The generator layers draw their initial weights from unless given a seed of their own.
    /// It is per thread, so a model built on one thread does not depend on what other threads
    /// build at the same time (tests run in parallel, for one).
    static INIT_RNG: RefCell<Rng64> = RefCell::new(Rng64::seed(0));
}

/// Reseeds this thread's generator that layer constructors draw initial weights from, like
/// `torch.manual_seed`: building the same model after the same seed gives the same weights.
pub fn manual_seed(seed: u64) {
    INIT_RNG.with(|r| *r.borrow_mut() = Rng64::seed(seed));
}

/// A fresh generator drawn from this thread's initialisation generator (seeded with 0 until
/// [`manual_seed`]), or from `seed` when the layer was given its own.
pub fn layer_rng(seed: Option<u64>) -> Rng64 {
    match seed {
        Some(s) => Rng64::seed(s),
        None => INIT_RNG.with(|r| r.borrow_mut().fork()),
    }
}

/// How to draw a layer's initial weights.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Init {
    /// PyTorch's default for Conv2d and Linear: Kaiming uniform with `a = sqrt(5)`, which is
    /// `U(-b, b)` with `b = 1 / sqrt(fan_in)`.
    #[default]
    PyTorchDefault,
    /// He et al. 2015 for ReLU networks: `N(0, 2 / fan_in)`.
    KaimingNormal,
    /// He et al. 2015, uniform variant: `U(-b, b)`, `b = sqrt(6 / fan_in)`.
    KaimingUniform,
    /// Kaiming normal with `fan_out` (torchvision's ResNet convs): `N(0, 2 / fan_out)`.
    KaimingNormalFanOut,
    /// Glorot and Bengio 2010: `U(-b, b)`, `b = sqrt(6 / (fan_in + fan_out))`.
    XavierUniform,
    /// Glorot and Bengio 2010: `N(0, 2 / (fan_in + fan_out))`.
    XavierNormal,
    /// A normal distribution with the given standard deviation (AlexNet used 0.01).
    Normal(f64),
    /// A constant value.
    Constant(f64),
}

impl Init {
    /// Checks that the distribution can be drawn from: `Normal(std)` needs a finite
    /// `std >= 0` and `Constant(c)` a finite `c`. Every layer that takes an `Init` calls this
    /// one check (through [`Init::sample`]), so they all accept and reject the same values.
    /// `what` names the layer and `which` the tensor (`weight`, `bias`) in the error.
    pub fn validate(self, what: &str, which: &str) -> Result<()> {
        match self {
            Init::Normal(std) if !(std.is_finite() && std >= 0.0) => Err(Error::config(
                what,
                format!("{which} Init::Normal std must be finite and >= 0, got {std}"),
            )),
            Init::Constant(c) if !c.is_finite() => Err(Error::config(
                what,
                format!("{which} Init::Constant must be finite, got {c}"),
            )),
            _ => Ok(()),
        }
    }

    /// Draws a tensor of `shape` with the given fans, after [`Init::validate`] and a size
    /// check ([`checked_numel`]): a distribution that cannot be drawn or a shape too large to
    /// allocate is an [`Error::InvalidConfig`] naming `what` and `which`.
    pub fn sample<T: Float>(
        self,
        what: &str,
        which: &str,
        shape: &[usize],
        fan_in: usize,
        fan_out: usize,
        rng: &mut Rng64,
    ) -> Result<Tensor<T>> {
        self.validate(what, which)?;
        let len = checked_numel(&format!("{what} ({which})"), shape)?;
        let fan_in = fan_in.max(1) as f64;
        let fan_out = fan_out.max(1) as f64;
        let bad = |e: String| Error::config(what, format!("{which}: {e}"));
        let mut values = try_filled(&format!("{what} ({which})"), len, T::zero())?;
        let mut fill = |draw: &mut dyn FnMut(&mut Rng64) -> f64| {
            values.iter_mut().for_each(|v| *v = T::of(draw(rng)));
        };
        match self {
            Init::Constant(c) => fill(&mut |_| c),
            Init::Normal(_)
            | Init::KaimingNormal
            | Init::KaimingNormalFanOut
            | Init::XavierNormal => {
                let std = match self {
                    Init::Normal(std) => std,
                    Init::KaimingNormal => (2.0 / fan_in).sqrt(),
                    Init::KaimingNormalFanOut => (2.0 / fan_out).sqrt(),
                    _ => (2.0 / (fan_in + fan_out)).sqrt(),
                };
                let d = Normal::new(0.0, std).map_err(|e| bad(e.to_string()))?;
                fill(&mut |r| d.sample(r));
            }
            Init::PyTorchDefault | Init::KaimingUniform | Init::XavierUniform => {
                let b = match self {
                    Init::PyTorchDefault => 1.0 / fan_in.sqrt(),
                    Init::KaimingUniform => (6.0 / fan_in).sqrt(),
                    _ => (6.0 / (fan_in + fan_out)).sqrt(),
                };
                let d = Uniform::new_inclusive(-b, b).map_err(|e| bad(e.to_string()))?;
                fill(&mut |r| d.sample(r));
            }
        }
        Tensor::from_shape_vec(IxDyn(shape), values).map_err(|e| bad(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_seed_repeats_the_default_stream() {
        manual_seed(11);
        let a: Tensor<f64> = Init::KaimingUniform
            .sample("t", "weight", &[3], 3, 3, &mut layer_rng(None))
            .unwrap();
        let b: Tensor<f64> = Init::KaimingUniform
            .sample("t", "weight", &[3], 3, 3, &mut layer_rng(None))
            .unwrap();
        manual_seed(11);
        let c: Tensor<f64> = Init::KaimingUniform
            .sample("t", "weight", &[3], 3, 3, &mut layer_rng(None))
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn explicit_seeds_repeat() {
        let a: Tensor<f64> = Init::KaimingUniform
            .sample("t", "weight", &[4, 4], 4, 4, &mut layer_rng(Some(9)))
            .unwrap();
        let b: Tensor<f64> = Init::KaimingUniform
            .sample("t", "weight", &[4, 4], 4, 4, &mut layer_rng(Some(9)))
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn kaiming_normal_has_the_he_variance() {
        let mut rng = Rng64::seed(0);
        let w: Tensor<f64> = Init::KaimingNormal
            .sample("t", "weight", &[256, 64, 3, 3], 576, 2304, &mut rng)
            .unwrap();
        let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
        assert!(
            (var - 2.0 / 576.0).abs() / (2.0 / 576.0) < 0.03,
            "var {var}"
        );
    }

    #[test]
    fn every_bad_distribution_is_a_config_error() {
        let mut rng = Rng64::seed(0);
        for init in [
            Init::Normal(f64::NAN),
            Init::Normal(-1.0),
            Init::Normal(f64::INFINITY),
            Init::Constant(f64::NAN),
            Init::Constant(f64::NEG_INFINITY),
        ] {
            let err = init
                .sample::<f32>("Conv2d(1 -> 1)", "weight", &[2], 1, 1, &mut rng)
                .unwrap_err();
            assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
            assert!(err.to_string().contains("Conv2d(1 -> 1)"), "{err}");
        }
        // Zero std is allowed (a constant zero tensor), as torch.nn.init.normal_ allows it.
        let z: Tensor<f64> = Init::Normal(0.0)
            .sample("t", "weight", &[3], 1, 1, &mut rng)
            .unwrap();
        assert!(z.iter().all(|&v| v == 0.0));
        // A shape too large to allocate is an error, not an abort.
        let err = Init::PyTorchDefault
            .sample::<f32>(
                "Linear(1048576 -> 1048576)",
                "weight",
                &[1 << 20, 1 << 20],
                1,
                1,
                &mut rng,
            )
            .unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    fn pytorch_default_is_bounded_by_one_over_sqrt_fan_in() {
        let mut rng = Rng64::seed(0);
        let w: Tensor<f32> = Init::PyTorchDefault
            .sample("t", "weight", &[10, 100], 100, 10, &mut rng)
            .unwrap();
        assert!(w.iter().all(|x| x.abs() <= 0.1 + 1e-7));
        assert!(w.iter().any(|x| x.abs() > 0.09));
    }
}
