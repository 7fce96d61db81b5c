//! Weight initialisation: Kaiming (He) and Xavier (Glorot), uniform and normal.
//!
//! `fan_in` of a conv weight `[out, in/groups, kh, kw]` is `in/groups * kh * kw`, and
//! `fan_out` is `out * kh * kw`, as PyTorch computes them.

use crate::rng::Rng64;
use crate::tensor::{Float, Tensor};
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
    /// Draws a tensor of `shape` with the given fans.
    pub fn sample<T: Float>(
        self,
        shape: &[usize],
        fan_in: usize,
        fan_out: usize,
        rng: &mut Rng64,
    ) -> Tensor<T> {
        let fan_in = fan_in.max(1) as f64;
        let fan_out = fan_out.max(1) as f64;
        let uniform = |b: f64, rng: &mut Rng64| -> Tensor<T> {
            let d = Uniform::new_inclusive(-b, b).expect("finite bound");
            Tensor::from_shape_simple_fn(IxDyn(shape), || T::of(d.sample(rng)))
        };
        let normal = |std: f64, rng: &mut Rng64| -> Tensor<T> {
            let d = Normal::new(0.0, std).expect("finite std");
            Tensor::from_shape_simple_fn(IxDyn(shape), || T::of(d.sample(rng)))
        };
        match self {
            Init::PyTorchDefault => uniform(1.0 / fan_in.sqrt(), rng),
            Init::KaimingNormal => normal((2.0 / fan_in).sqrt(), rng),
            Init::KaimingUniform => uniform((6.0 / fan_in).sqrt(), rng),
            Init::KaimingNormalFanOut => normal((2.0 / fan_out).sqrt(), rng),
            Init::XavierUniform => uniform((6.0 / (fan_in + fan_out)).sqrt(), rng),
            Init::XavierNormal => normal((2.0 / (fan_in + fan_out)).sqrt(), rng),
            Init::Normal(std) => normal(std, rng),
            Init::Constant(c) => Tensor::from_elem(IxDyn(shape), T::of(c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_seed_repeats_the_default_stream() {
        manual_seed(11);
        let a: Tensor<f64> = Init::KaimingUniform.sample(&[3], 3, 3, &mut layer_rng(None));
        let b: Tensor<f64> = Init::KaimingUniform.sample(&[3], 3, 3, &mut layer_rng(None));
        manual_seed(11);
        let c: Tensor<f64> = Init::KaimingUniform.sample(&[3], 3, 3, &mut layer_rng(None));
        assert_ne!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn explicit_seeds_repeat() {
        let a: Tensor<f64> = Init::KaimingUniform.sample(&[4, 4], 4, 4, &mut layer_rng(Some(9)));
        let b: Tensor<f64> = Init::KaimingUniform.sample(&[4, 4], 4, 4, &mut layer_rng(Some(9)));
        assert_eq!(a, b);
    }

    #[test]
    fn kaiming_normal_has_the_he_variance() {
        let mut rng = Rng64::seed(0);
        let w: Tensor<f64> = Init::KaimingNormal.sample(&[256, 64, 3, 3], 576, 2304, &mut rng);
        let var = w.iter().map(|x| x * x).sum::<f64>() / w.len() as f64;
        assert!(
            (var - 2.0 / 576.0).abs() / (2.0 / 576.0) < 0.03,
            "var {var}"
        );
    }

    #[test]
    fn pytorch_default_is_bounded_by_one_over_sqrt_fan_in() {
        let mut rng = Rng64::seed(0);
        let w: Tensor<f32> = Init::PyTorchDefault.sample(&[10, 100], 100, 10, &mut rng);
        assert!(w.iter().all(|x| x.abs() <= 0.1 + 1e-7));
        assert!(w.iter().any(|x| x.abs() > 0.09));
    }
}
