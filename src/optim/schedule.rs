//! Learning-rate schedules: the learning rate for an epoch as a closed-form function of the
//! base rate, as PyTorch's `lr_scheduler` classes compute it.
//!
//! ```text
//! Constant:         lr(e) = base
//! StepLr:           lr(e) = base · γ^⌊e / step_size⌋
//! CosineAnnealing:  lr(e) = η_min + (base - η_min) · (1 + cos(π · e / T_max)) / 2
//! ```
//!
//! Epochs count from 0 (the first epoch trains at `lr_at(base, 0) = base`). Apply one with
//! `opt.set_lr(schedule.lr_at(base_lr, epoch))` at the start of each epoch.

use super::check_range;
use crate::error::{Error, Result};

/// A learning rate as a function of the epoch.
pub trait LrSchedule: Send + Sync {
    /// The learning rate for `epoch` (counted from 0) given the initial rate `base_lr`.
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64;
}

/// The base learning rate at every epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Constant;

impl LrSchedule for Constant {
    fn lr_at(&self, base_lr: f64, _epoch: usize) -> f64 {
        base_lr
    }
}

/// Multiplies the rate by `gamma` every `step_size` epochs (PyTorch `StepLR`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLr {
    step_size: usize,
    gamma: f64,
}

impl StepLr {
    /// Decay by `gamma` (finite, `> 0`) every `step_size` (`>= 1`) epochs.
    pub fn new(step_size: usize, gamma: f64) -> Result<Self> {
        if step_size == 0 {
            return Err(Error::config("StepLr", "step_size must be at least 1"));
        }
        check_range("StepLr", "gamma", gamma, 0.0, true, f64::INFINITY)?;
        Ok(StepLr { step_size, gamma })
    }

    /// Epochs between decays.
    pub fn step_size(&self) -> usize {
        self.step_size
    }

    /// The decay factor.
    pub fn gamma(&self) -> f64 {
        self.gamma
    }
}

impl LrSchedule for StepLr {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        let decays = (epoch / self.step_size).min(i32::MAX as usize) as i32;
        base_lr * self.gamma.powi(decays)
    }
}

/// Half a cosine from the base rate down to `eta_min` over `t_max` epochs (PyTorch
/// `CosineAnnealingLR`, its closed form, without restarts). Past `t_max` the formula keeps
/// following the cosine back up, as PyTorch's does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineAnnealing {
    t_max: usize,
    eta_min: f64,
}

impl CosineAnnealing {
    /// Anneal over `t_max` (`>= 1`) epochs to `eta_min` (finite, `>= 0`).
    pub fn new(t_max: usize, eta_min: f64) -> Result<Self> {
        if t_max == 0 {
            return Err(Error::config("CosineAnnealing", "t_max must be at least 1"));
        }
        check_range(
            "CosineAnnealing",
            "eta_min",
            eta_min,
            0.0,
            false,
            f64::INFINITY,
        )?;
        Ok(CosineAnnealing { t_max, eta_min })
    }

    /// The number of epochs of the half cosine.
    pub fn t_max(&self) -> usize {
        self.t_max
    }

    /// The final learning rate.
    pub fn eta_min(&self) -> f64 {
        self.eta_min
    }
}

impl LrSchedule for CosineAnnealing {
    fn lr_at(&self, base_lr: f64, epoch: usize) -> f64 {
        let phase = std::f64::consts::PI * epoch as f64 / self.t_max as f64;
        self.eta_min + (base_lr - self.eta_min) * (1.0 + phase.cos()) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * (1.0 + b.abs())
    }

    #[test]
    fn step_lr_values() {
        let s = StepLr::new(30, 0.1).unwrap();
        for (epoch, want) in [
            (0, 0.1),
            (29, 0.1),
            (30, 0.01),
            (59, 0.01),
            (60, 0.001),
            (95, 0.0001),
        ] {
            assert!(
                close(s.lr_at(0.1, epoch), want),
                "epoch {epoch}: {}",
                s.lr_at(0.1, epoch)
            );
        }
        assert_eq!(StepLr::new(1, 0.5).unwrap().lr_at(8.0, 3), 1.0);
    }

    #[test]
    fn cosine_values() {
        let s = CosineAnnealing::new(10, 0.001).unwrap();
        // Start, middle (cos = 0), end (cos = -1), a third of the way (cos 60° = 1/2), and
        // past the end (the cosine comes back up: epoch 15 is like epoch 5).
        assert!(close(s.lr_at(0.1, 0), 0.1));
        assert!(close(s.lr_at(0.1, 5), 0.001 + 0.099 / 2.0));
        assert!(close(s.lr_at(0.1, 10), 0.001));
        let third = CosineAnnealing::new(3, 0.0).unwrap();
        assert!(close(third.lr_at(1.0, 1), 0.75));
        assert!(close(third.lr_at(1.0, 2), 0.25));
        assert!(close(s.lr_at(0.1, 15), s.lr_at(0.1, 5)));
        assert!(close(s.lr_at(0.1, 20), 0.1));
    }

    #[test]
    fn constant_and_errors() {
        assert_eq!(Constant.lr_at(0.3, 1000), 0.3);
        assert!(StepLr::new(0, 0.1).is_err());
        assert!(StepLr::new(5, -0.1).is_err());
        assert!(StepLr::new(5, f64::NAN).is_err());
        assert!(CosineAnnealing::new(0, 0.0).is_err());
        assert!(CosineAnnealing::new(10, -1e-3).is_err());
    }

    #[test]
    fn drives_an_optimizer() {
        use crate::optim::{Optimizer, Sgd, SgdConfig};
        let mut opt = Sgd::<f64>::new(SgdConfig::new(0.1)).unwrap();
        let sched: Box<dyn LrSchedule> = Box::new(StepLr::new(2, 0.5).unwrap());
        let lrs: Vec<f64> = (0..5)
            .map(|e| {
                opt.set_lr(sched.lr_at(0.1, e));
                opt.lr()
            })
            .collect();
        assert_eq!(lrs, [0.1, 0.1, 0.05, 0.05, 0.025]);
    }
}
