//! Optimizers (SGD with momentum/Nesterov, Adam, AdamW) and learning-rate schedules.
//!
//! An [`Optimizer`] walks a model with [`Layer::visit_mut`] and updates every trainable
//! parameter from the gradient `backward` accumulated in [`Param::grad`]:
//!
//! ```text
//! loop over batches:
//!     model.zero_grad();
//!     logits = model.forward(x);   (loss, dlogits) = loss.forward(logits, y);
//!     model.backward(dlogits);
//!     opt.step(&mut model);        // p ← p - lr · direction(grad, state)
//! ```
//!
//! Per-parameter state (momentum buffers, Adam moments and step counts) is kept in a map keyed
//! by the parameter's `state_dict` name (`0.weight`, `layer1.0.conv1.weight`), so it survives
//! between steps and can be saved and restored: [`Optimizer::state`] lists it as named tensors
//! (`<param>.momentum_buffer`, `<param>.exp_avg`, `<param>.exp_avg_sq`, `<param>.step`) and
//! [`Optimizer::load_state`] puts it back. Hyperparameters live in the config the optimizer was
//! built from; the learning rate can be changed between steps with [`Optimizer::set_lr`],
//! typically from an [`LrSchedule`].
//!
//! The update rules are PyTorch's (`torch.optim.SGD`, `Adam`, `AdamW`, single-tensor path).
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod adam;
pub mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig, AdamW, AdamWConfig};
pub use schedule::{Constant, CosineAnnealing, LrSchedule, StepLr};
pub use sgd::{Sgd, SgdConfig};

use crate::error::{Error, Result};
use crate::layer::{Layer, Param, SlotMut};
use crate::tensor::{fmt_shape, slice_mut, Float, Tensor};

/// A rule that updates parameters from their gradients.
///
/// Implementors provide the per-parameter rule [`Optimizer::update`]; [`Optimizer::step`]
/// applies it to every parameter of a model, in `visit_mut` order.
pub trait Optimizer<T: Float>: Send {
    /// The optimizer's name as PyTorch spells it (`"SGD"`, `"Adam"`, `"AdamW"`).
    fn kind(&self) -> &'static str;

    /// Updates one parameter in place from its `grad`, using and advancing the state kept
    /// under `name`.
    ///
    /// Errors (leaving the parameter and its state untouched): a gradient whose shape differs
    /// from the value's, stored state of another shape (a mismatched checkpoint), or a
    /// learning rate that is negative or not finite.
    fn update(&mut self, name: &str, param: &mut Param<T>) -> Result<()>;

    /// Applies [`Optimizer::update`] to every trainable parameter of `model` (buffers such as
    /// batch-norm running statistics are skipped). Stops at the first error.
    fn step(&mut self, model: &mut dyn Layer<T>) -> Result<()> {
        let mut result = Ok(());
        model.visit_mut(&mut |name, slot| {
            if result.is_ok() {
                if let SlotMut::Param(p) = slot {
                    result = self.update(name, p);
                }
            }
        });
        result
    }

    /// The current learning rate.
    fn lr(&self) -> f64;

    /// Sets the learning rate used by the next steps (e.g. from an [`LrSchedule`]). A negative
    /// or non-finite value is reported as an error by the next [`Optimizer::update`].
    fn set_lr(&mut self, lr: f64);

    /// Calls `f` with every state tensor, named `<param>.<entry>` (`<entry>` being
    /// `momentum_buffer` for SGD; `exp_avg`, `exp_avg_sq` and the 0-d `step` for Adam(W)),
    /// in a deterministic order (sorted by parameter name).
    fn visit_state(&self, f: &mut dyn FnMut(&str, &Tensor<T>));

    /// Replaces the whole state with `entries` as produced by [`Optimizer::state`] (or
    /// [`Optimizer::visit_state`]). Nothing changes when an entry is unknown, incomplete or
    /// malformed.
    fn load_state(&mut self, entries: Vec<(String, Tensor<T>)>) -> Result<()>;

    /// Forgets all per-parameter state, as if no step had been taken.
    fn reset(&mut self);

    /// The state as owned named tensors, for a checkpoint.
    fn state(&self) -> Vec<(String, Tensor<T>)> {
        let mut out = Vec::new();
        self.visit_state(&mut |name, t| out.push((name.to_string(), t.clone())));
        out
    }
}

/// Checks a hyperparameter: finite and within `[min, max]` (or `(min, max]` with
/// `min_exclusive`).
pub(crate) fn check_range(
    what: &str,
    name: &str,
    value: f64,
    min: f64,
    min_exclusive: bool,
    max: f64,
) -> Result<()> {
    let above = if min_exclusive {
        value > min
    } else {
        value >= min
    };
    if value.is_finite() && above && value <= max {
        return Ok(());
    }
    let low = if min_exclusive { "(" } else { "[" };
    let high = if max.is_finite() {
        format!("{max}]")
    } else {
        "inf)".to_string()
    };
    Err(Error::config(
        what,
        format!("{name} must be in {low}{min}, {high}, got {value}"),
    ))
}

/// Checks, before an update, that the learning rate is usable and that `grad` and each piece
/// of state have the parameter's shape.
pub(crate) fn check_update<T: Float>(
    what: &str,
    lr: f64,
    name: &str,
    param: &Param<T>,
    state: &[&Tensor<T>],
) -> Result<()> {
    check_range(what, "lr", lr, 0.0, false, f64::INFINITY)?;
    let shape = param.value.shape();
    if param.grad.shape() != shape {
        return Err(Error::shape(
            format!("{what} ({name}.grad)"),
            fmt_shape(shape),
            param.grad.shape(),
        ));
    }
    for s in state {
        if s.shape() != shape {
            return Err(Error::shape(
                format!("{what} (state of {name})"),
                fmt_shape(shape),
                s.shape(),
            ));
        }
    }
    Ok(())
}

/// The elements of `t` as one mutable row-major slice, first making `t` row-major if it is
/// not (a parameter or state tensor set from a strided view): same values, same shape.
pub(crate) fn row_major<T: Float>(t: &mut Tensor<T>) -> Result<&mut [T]> {
    if !t.is_standard_layout() {
        *t = t.as_standard_layout().into_owned();
    }
    slice_mut(t)
}

/// Splits a state entry name `<param>.<entry>` at its last dot.
pub(crate) fn split_state_name<'a>(what: &str, name: &'a str) -> Result<(&'a str, &'a str)> {
    name.rsplit_once('.').ok_or_else(|| {
        Error::input(
            what,
            format!("state entry `{name}` is not named `<param>.<entry>`"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Linear, LinearConfig};
    use crate::loss::MseLoss;
    use crate::tensor::from_vec;

    /// y = 3 x0 - 2 x1 + 0.5 on a fixed grid: SGD on a Linear layer with MSE must fit it.
    fn regression(opt: &mut dyn Optimizer<f64>) -> (f64, f64) {
        let xs: Vec<f64> = (0..16)
            .flat_map(|i| [(i % 4) as f64 / 3.0 - 0.5, (i / 4) as f64 / 3.0 - 0.5])
            .collect();
        let ys: Vec<f64> = xs
            .chunks(2)
            .map(|x| 3.0 * x[0] - 2.0 * x[1] + 0.5)
            .collect();
        let (x, y) = (from_vec(&[16, 2], xs), from_vec(&[16, 1], ys));
        let mut layer = Linear::<f64>::new(crate::layers::LinearConfig::new(2, 1).seed(3)).unwrap();
        let mut first = None;
        let mut last = 0.0;
        for _ in 0..200 {
            layer.zero_grad();
            let out = layer.forward(&x).unwrap();
            let (loss, grad) = MseLoss::new().forward(&out, &y).unwrap();
            first.get_or_insert(loss);
            last = loss;
            layer.backward(&grad).unwrap();
            opt.step(&mut layer).unwrap();
        }
        (first.unwrap(), last)
    }

    #[test]
    fn optimizers_fit_a_tiny_linear_regression() {
        let mut sgd = Sgd::new(SgdConfig::new(0.1).momentum(0.9)).unwrap();
        let (first, last) = regression(&mut sgd);
        assert!(last < 1e-6 * first, "SGD: {first} -> {last}");
        let names: Vec<String> = sgd.state().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["bias.momentum_buffer", "weight.momentum_buffer"]);
        let mut adam = Adam::new(AdamConfig::new(0.05)).unwrap();
        let (first, last) = regression(&mut adam);
        assert!(last < 1e-3 * first, "Adam: {first} -> {last}");
    }

    #[test]
    fn step_reports_a_bad_gradient_shape() {
        let mut layer = Linear::<f64>::new(LinearConfig::new(2, 1)).unwrap();
        layer.visit_mut(&mut |_, slot| {
            if let SlotMut::Param(p) = slot {
                p.grad = crate::tensor::zeros(&[7]);
            }
        });
        let mut sgd = Sgd::new(SgdConfig::new(0.1)).unwrap();
        assert!(matches!(
            sgd.step(&mut layer),
            Err(Error::ShapeMismatch { .. })
        ));
    }
}
