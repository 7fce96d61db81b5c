//! Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay,
//! exactly as `torch.optim.SGD`:
//!
//! ```text
//! g = grad + wd·p                     (g = -grad + wd·p with maximize)
//! buf = g                              (first step: no dampening)
//! buf = μ·buf + (1 - dampening)·g      (later steps)
//! d = g + μ·buf   if nesterov,   else   d = buf        (d = g when μ = 0: no buffer kept)
//! p = p - lr·d
//! ```

use super::{check_range, check_update, row_major, split_state_name, Optimizer};
use crate::error::{Error, Result};
use crate::kernels::optim::{self, SgdStep};
use crate::layer::Param;
use crate::tensor::{Float, Tensor};
use std::collections::BTreeMap;

/// Hyperparameters of [`Sgd`]; defaults as PyTorch (no momentum, no dampening, no
/// Nesterov, no weight decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate (`> 0`).
    pub lr: f64,
    /// Momentum factor μ (`>= 0`; 0 keeps no state).
    pub momentum: f64,
    /// Dampening of the gradient added to the momentum buffer (in `[0, 1]`).
    pub dampening: f64,
    /// Nesterov momentum (needs `momentum > 0` and `dampening = 0`).
    pub nesterov: bool,
    /// L2 penalty `wd` added to the gradient as `wd·p` (`>= 0`).
    pub weight_decay: f64,
    /// Maximize the objective: step along the gradient instead of against it.
    pub maximize: bool,
}

impl SgdConfig {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        SgdConfig {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            maximize: false,
        }
    }

    /// Momentum factor μ.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Dampening.
    pub fn dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }

    /// Nesterov momentum on or off.
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    /// L2 weight decay.
    pub fn weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// Maximize instead of minimize (PyTorch's `maximize`).
    pub fn maximize(mut self, maximize: bool) -> Self {
        self.maximize = maximize;
        self
    }
}

/// SGD optimizer (`torch.optim.SGD`). With momentum it keeps one buffer per parameter,
/// named `<param>.momentum_buffer` in [`Optimizer::state`].
#[derive(Clone, Debug)]
pub struct Sgd<T: Float> {
    cfg: SgdConfig,
    momentum_buffer: BTreeMap<String, Tensor<T>>,
}

const WHAT: &str = "SGD";

impl<T: Float> Sgd<T> {
    /// An SGD optimizer; errors when a hyperparameter is out of range or Nesterov is asked
    /// for without momentum or with dampening.
    pub fn new(cfg: SgdConfig) -> Result<Self> {
        check_range(WHAT, "lr", cfg.lr, 0.0, true, f64::INFINITY)?;
        check_range(WHAT, "momentum", cfg.momentum, 0.0, false, f64::INFINITY)?;
        check_range(WHAT, "dampening", cfg.dampening, 0.0, false, 1.0)?;
        check_range(
            WHAT,
            "weight_decay",
            cfg.weight_decay,
            0.0,
            false,
            f64::INFINITY,
        )?;
        if cfg.nesterov && (cfg.momentum <= 0.0 || cfg.dampening != 0.0) {
            return Err(Error::config(
                WHAT,
                "Nesterov momentum requires momentum > 0 and dampening = 0",
            ));
        }
        Ok(Sgd {
            cfg,
            momentum_buffer: BTreeMap::new(),
        })
    }

    /// The configuration, with the current learning rate.
    pub fn config(&self) -> SgdConfig {
        self.cfg
    }
}

impl<T: Float> Optimizer<T> for Sgd<T> {
    fn kind(&self) -> &'static str {
        WHAT
    }

    fn update(&mut self, name: &str, param: &mut Param<T>) -> Result<()> {
        let buf = self.momentum_buffer.get(name);
        check_update(WHAT, self.cfg.lr, name, param, buf.as_slice())?;
        let lr = T::of(self.cfg.lr);
        let wd = T::of(self.cfg.weight_decay);
        let grad_sign = if self.cfg.maximize {
            -T::one()
        } else {
            T::one()
        };
        if self.cfg.momentum == 0.0 {
            let (p, g) = (row_major(&mut param.value)?, row_major(&mut param.grad)?);
            optim::sgd(p, g, lr, grad_sign, wd);
            return Ok(());
        }
        let step = SgdStep {
            lr,
            grad_sign,
            weight_decay: wd,
            momentum: T::of(self.cfg.momentum),
            keep: T::one() - T::of(self.cfg.dampening),
            nesterov: self.cfg.nesterov,
            first: buf.is_none(),
        };
        let buf = self
            .momentum_buffer
            .entry(name.to_string())
            .or_insert_with(|| Tensor::zeros(param.value.raw_dim()));
        let (p, g) = (row_major(&mut param.value)?, row_major(&mut param.grad)?);
        optim::sgd_momentum(p, g, row_major(buf)?, step);
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.cfg.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }

    fn visit_state(&self, f: &mut dyn FnMut(&str, &Tensor<T>)) {
        for (name, buf) in &self.momentum_buffer {
            f(&format!("{name}.momentum_buffer"), buf);
        }
    }

    fn load_state(&mut self, entries: Vec<(String, Tensor<T>)>) -> Result<()> {
        if self.cfg.momentum == 0.0 && !entries.is_empty() {
            return Err(Error::input(
                WHAT,
                "SGD without momentum keeps no state, but state was given",
            ));
        }
        let mut state = BTreeMap::new();
        for (entry, tensor) in entries {
            match split_state_name(WHAT, &entry)? {
                (param, "momentum_buffer") => {
                    if state.insert(param.to_string(), tensor).is_some() {
                        return Err(Error::input(
                            WHAT,
                            format!("state entry `{entry}` given twice"),
                        ));
                    }
                }
                _ => return Err(Error::input(WHAT, format!("unknown state entry `{entry}`"))),
            }
        }
        self.momentum_buffer = state;
        Ok(())
    }

    fn reset(&mut self) {
        self.momentum_buffer.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::from_vec;
    use crate::testutil::{assert_close, parity};

    #[test]
    fn matches_pytorch_parity_cases() {
        for k in 0..2 {
            let (cfg, t) = parity(&format!("sgd_{k:03}.safetensors"));
            let config = SgdConfig::new(cfg["lr"].as_f64().unwrap())
                .momentum(cfg["momentum"].as_f64().unwrap())
                .dampening(cfg["dampening"].as_f64().unwrap())
                .nesterov(cfg["nesterov"].as_bool().unwrap())
                .weight_decay(cfg["weight_decay"].as_f64().unwrap());
            let mut opt = Sgd::new(config).unwrap();
            let mut p = Param::new(t["param_initial"].clone());
            for step in 1..=3 {
                p.grad = t[&format!("grad_{step}")].clone();
                opt.update("w", &mut p).unwrap();
                assert_close(
                    &format!("case {k} step {step} param"),
                    &p.value,
                    &t[&format!("param_step_{step}")],
                );
                let state = opt.state();
                assert_eq!(state.len(), 1);
                assert_eq!(state[0].0, "w.momentum_buffer");
                let want = &t[&format!("state_step_{step}.momentum_buffer")];
                assert_close(&format!("case {k} step {step} buffer"), &state[0].1, want);
            }
        }
    }

    #[test]
    fn hand_computed_steps() {
        // p = 1, grads 1 then 1, μ = 0.5, dampening 0.5, lr 0.1, wd 0.
        // step 1: buf = 1, p = 0.9; step 2: buf = 0.5 + 0.5 = 1, p = 0.8.
        let cfg = SgdConfig::new(0.1).momentum(0.5).dampening(0.5);
        let mut opt = Sgd::<f64>::new(cfg).unwrap();
        let mut p = Param::new(from_vec(&[1], vec![1.0]));
        p.grad.fill(1.0);
        opt.update("p", &mut p).unwrap();
        assert!((p.value[0] - 0.9).abs() < 1e-15);
        opt.update("p", &mut p).unwrap();
        assert!((p.value[0] - 0.8).abs() < 1e-15);
        // Nesterov, μ = 0.5, wd = 0.1, p = 2, grad 1: g = 1.2, buf = 1.2, d = 1.8, p = 2 - 0.18.
        let mut opt = Sgd::<f64>::new(
            SgdConfig::new(0.1)
                .momentum(0.5)
                .nesterov(true)
                .weight_decay(0.1),
        )
        .unwrap();
        let mut p = Param::new(from_vec(&[1], vec![2.0]));
        p.grad.fill(1.0);
        opt.update("p", &mut p).unwrap();
        assert!((p.value[0] - 1.82).abs() < 1e-15);
        // Plain SGD keeps no state.
        let mut plain = Sgd::<f64>::new(SgdConfig::new(0.5)).unwrap();
        plain.update("p", &mut p).unwrap();
        assert!((p.value[0] - (1.82 - 0.5)).abs() < 1e-15);
        assert!(plain.state().is_empty());
    }

    #[test]
    fn state_round_trips_through_load_state() {
        let cfg = SgdConfig::new(0.1).momentum(0.9);
        let (mut a, mut b) = (Sgd::<f64>::new(cfg).unwrap(), Sgd::<f64>::new(cfg).unwrap());
        let mut pa = Param::new(from_vec(&[3], vec![1.0, -2.0, 0.5]));
        pa.grad = from_vec(&[3], vec![0.3, 0.1, -1.0]);
        a.update("x", &mut pa).unwrap();
        b.load_state(a.state()).unwrap();
        let mut pb = pa.clone();
        a.update("x", &mut pa).unwrap();
        b.update("x", &mut pb).unwrap();
        assert_eq!(pa.value, pb.value);
        assert!(b
            .load_state(vec![("x.exp_avg".into(), pa.value.clone())])
            .is_err());
        assert!(b
            .load_state(vec![("nodot".into(), pa.value.clone())])
            .is_err());
        // A buffer of the wrong shape is caught at the next update.
        b.load_state(vec![(
            "x.momentum_buffer".into(),
            from_vec(&[2], vec![0.0, 0.0]),
        )])
        .unwrap();
        assert!(matches!(
            b.update("x", &mut pb),
            Err(Error::ShapeMismatch { .. })
        ));
        b.reset();
        assert!(b.state().is_empty());
    }

    #[test]
    fn bad_configs_are_rejected() {
        let bad = [
            SgdConfig::new(-0.1),
            SgdConfig::new(0.0),
            SgdConfig::new(f64::NAN),
            SgdConfig::new(0.1).momentum(-0.9),
            SgdConfig::new(0.1).dampening(2.0),
            SgdConfig::new(0.1).weight_decay(-1e-4),
            SgdConfig::new(0.1).nesterov(true),
            SgdConfig::new(0.1)
                .momentum(0.9)
                .dampening(0.1)
                .nesterov(true),
        ];
        for cfg in bad {
            assert!(
                matches!(Sgd::<f32>::new(cfg), Err(Error::InvalidConfig { .. })),
                "{cfg:?}"
            );
        }
        let mut opt = Sgd::<f32>::new(SgdConfig::new(0.1)).unwrap();
        opt.set_lr(-1.0);
        assert_eq!(opt.lr(), -1.0);
        let mut p = Param::new(from_vec(&[1], vec![1.0f32]));
        assert!(matches!(
            opt.update("p", &mut p),
            Err(Error::InvalidConfig { .. })
        ));
        assert_eq!(p.value[0], 1.0);
    }
}
