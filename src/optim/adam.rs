//! Adam (Kingma and Ba 2015) with coupled L2 decay, and AdamW (Loshchilov and Hutter 2019)
//! with decoupled weight decay, exactly as `torch.optim.Adam` / `torch.optim.AdamW`:
//!
//! ```text
//! t = t + 1                                          (per parameter)
//! Adam:  g = grad + wd·p                 AdamW:  p = p·(1 - lr·wd),  g = grad
//!                                        (grad negated first with `maximize`)
//! m = β1·m + (1 - β1)·g
//! v = β2·v + (1 - β2)·g²
//! v̂ = v,   or with `amsgrad`:  v̂ = v_max = max(v_max, v)
//! p = p - lr/(1 - β1^t) · m / (sqrt(v̂)/sqrt(1 - β2^t) + eps)      (eps after the sqrt)
//! ```
//!
//! State per parameter: `<param>.exp_avg` (m), `<param>.exp_avg_sq` (v), with AMSGrad
//! `<param>.max_exp_avg_sq` (v_max), and the 0-d `<param>.step` (t).
//!
//! The two optimizers have separate configs only because their default weight decay
//! differs, as in PyTorch: [`AdamConfig`] defaults to 0, [`AdamWConfig`] to 0.01.

use super::{check_range, check_update, row_major, split_state_name, Optimizer};
use crate::error::{Error, Result};
use crate::kernels::optim::{self, AdamStep};
use crate::layer::Param;
use crate::tensor::{fmt_shape, Float, Tensor};
use std::collections::BTreeMap;

/// Generates an Adam-family config struct with builder setters.
macro_rules! adam_config {
    ($(#[$doc:meta])* $name:ident, $optimizer:literal, $default_wd:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq)]
        pub struct $name {
            /// Learning rate (`> 0`).
            pub lr: f64,
            /// `(β1, β2)`, decay rates of the first and second moment estimates, each in
            /// `[0, 1)`; default `(0.9, 0.999)`.
            pub betas: (f64, f64),
            /// Added to the denominator after the square root (`>= 0`); default `1e-8`.
            pub eps: f64,
            #[doc = concat!("Weight decay (`>= 0`); default `", stringify!($default_wd), "`.")]
            pub weight_decay: f64,
            /// AMSGrad: divide by the running maximum of `v` (default `false`).
            pub amsgrad: bool,
            /// Maximize the objective instead of minimizing it (default `false`).
            pub maximize: bool,
        }

        impl $name {
            #[doc = concat!(
                "`", $optimizer, "` with learning rate `lr`, betas `(0.9, 0.999)`, eps `1e-8`, ",
                "weight decay `", stringify!($default_wd), "` (PyTorch's defaults)."
            )]
            pub fn new(lr: f64) -> Self {
                $name {
                    lr,
                    betas: (0.9, 0.999),
                    eps: 1e-8,
                    weight_decay: $default_wd,
                    amsgrad: false,
                    maximize: false,
                }
            }

            /// Decay rates `(β1, β2)` of the moment estimates.
            pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
                self.betas = (beta1, beta2);
                self
            }

            /// Denominator epsilon.
            pub fn eps(mut self, eps: f64) -> Self {
                self.eps = eps;
                self
            }

            /// Weight decay.
            pub fn weight_decay(mut self, weight_decay: f64) -> Self {
                self.weight_decay = weight_decay;
                self
            }

            /// AMSGrad on or off (PyTorch's `amsgrad`).
            pub fn amsgrad(mut self, amsgrad: bool) -> Self {
                self.amsgrad = amsgrad;
                self
            }

            /// Maximize instead of minimize (PyTorch's `maximize`).
            pub fn maximize(mut self, maximize: bool) -> Self {
                self.maximize = maximize;
                self
            }
        }
    };
}

adam_config!(
    /// Hyperparameters of [`Adam`]; weight decay is the coupled L2 penalty `g += wd·p`.
    AdamConfig,
    "Adam",
    0.0
);

adam_config!(
    /// Hyperparameters of [`AdamW`]; weight decay is decoupled, `p *= 1 - lr·wd`, and
    /// defaults to 0.01 as in PyTorch.
    AdamWConfig,
    "AdamW",
    0.01
);

/// The moments and step count of one parameter.
#[derive(Clone, Debug)]
struct Moments<T: Float> {
    steps: u64,
    step: Tensor<T>,
    exp_avg: Tensor<T>,
    exp_avg_sq: Tensor<T>,
    /// AMSGrad's running maximum of `exp_avg_sq` (`None` without AMSGrad).
    max_exp_avg_sq: Option<Tensor<T>>,
}

/// What Adam and AdamW share: hyperparameters, the update and the state.
#[derive(Clone, Debug)]
struct Core<T: Float> {
    what: &'static str,
    decoupled: bool,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    amsgrad: bool,
    maximize: bool,
    state: BTreeMap<String, Moments<T>>,
}

impl<T: Float> Core<T> {
    fn new(
        what: &'static str,
        decoupled: bool,
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
        (amsgrad, maximize): (bool, bool),
    ) -> Result<Self> {
        check_range(what, "lr", lr, 0.0, true, f64::INFINITY)?;
        check_range(what, "beta1", betas.0, 0.0, false, 1.0)?;
        check_range(what, "beta2", betas.1, 0.0, false, 1.0)?;
        if betas.0 == 1.0 || betas.1 == 1.0 {
            return Err(Error::config(
                what,
                format!("betas must be below 1, got {betas:?}"),
            ));
        }
        check_range(what, "eps", eps, 0.0, false, f64::INFINITY)?;
        check_range(
            what,
            "weight_decay",
            weight_decay,
            0.0,
            false,
            f64::INFINITY,
        )?;
        Ok(Core {
            what,
            decoupled,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            maximize,
            state: BTreeMap::new(),
        })
    }

    fn update(&mut self, name: &str, param: &mut Param<T>) -> Result<()> {
        let old = self.state.get(name);
        let moments: Vec<&Tensor<T>> = old.map_or(Vec::new(), |s| {
            [&s.exp_avg, &s.exp_avg_sq]
                .into_iter()
                .chain(s.max_exp_avg_sq.as_ref())
                .collect()
        });
        check_update(self.what, self.lr, name, param, &moments)?;
        let amsgrad = self.amsgrad;
        let s = self.state.entry(name.to_string()).or_insert_with(|| {
            let zeros = || Tensor::zeros(param.value.raw_dim());
            Moments {
                steps: 0,
                step: Tensor::zeros(ndarray::IxDyn(&[])),
                exp_avg: zeros(),
                exp_avg_sq: zeros(),
                max_exp_avg_sq: amsgrad.then(zeros),
            }
        });
        s.steps += 1;
        s.step.fill(T::of(s.steps as f64));

        let (b1, b2) = self.betas;
        let t = s.steps as f64;
        let bias_correction1 = 1.0 - b1.powf(t);
        let bias_correction2_sqrt = (1.0 - b2.powf(t)).sqrt();
        let step_size = T::of(self.lr / bias_correction1);
        let bc2_sqrt = T::of(bias_correction2_sqrt);
        let (beta1, beta2, eps) = (T::of(b1), T::of(b2), T::of(self.eps));
        let (one_m_b1, one_m_b2) = (T::of(1.0 - b1), T::of(1.0 - b2));
        let (coupled_wd, shrink) = if self.decoupled {
            (T::zero(), T::of(1.0 - self.lr * self.weight_decay))
        } else {
            (T::of(self.weight_decay), T::one())
        };

        let step = AdamStep {
            shrink,
            grad_sign: if self.maximize { -T::one() } else { T::one() },
            coupled_wd,
            beta1,
            beta2,
            one_m_beta1: one_m_b1,
            one_m_beta2: one_m_b2,
            step_size,
            bias_correction2_sqrt: bc2_sqrt,
            eps,
        };
        let (p, g) = (row_major(&mut param.value)?, row_major(&mut param.grad)?);
        let (m, v) = (row_major(&mut s.exp_avg)?, row_major(&mut s.exp_avg_sq)?);
        let v_max = match s.max_exp_avg_sq.as_mut() {
            Some(w) => Some(row_major(w)?),
            None => None,
        };
        optim::adam(p, g, m, v, v_max, step);
        Ok(())
    }

    fn visit_state(&self, f: &mut dyn FnMut(&str, &Tensor<T>)) {
        for (name, s) in &self.state {
            f(&format!("{name}.exp_avg"), &s.exp_avg);
            f(&format!("{name}.exp_avg_sq"), &s.exp_avg_sq);
            if let Some(w) = &s.max_exp_avg_sq {
                f(&format!("{name}.max_exp_avg_sq"), w);
            }
            f(&format!("{name}.step"), &s.step);
        }
    }

    fn load_state(&mut self, entries: Vec<(String, Tensor<T>)>) -> Result<()> {
        let what = self.what;
        type Parts<T> = [Option<Tensor<T>>; 4];
        let mut parts: BTreeMap<String, Parts<T>> = BTreeMap::new();
        for (entry, tensor) in entries {
            let (param, kind) = split_state_name(what, &entry)?;
            let slot = match kind {
                "exp_avg" => 0,
                "exp_avg_sq" => 1,
                "step" => 2,
                "max_exp_avg_sq" if self.amsgrad => 3,
                _ => return Err(Error::input(what, format!("unknown state entry `{entry}`"))),
            };
            let e = parts.entry(param.to_string()).or_default().get_mut(slot);
            if e.and_then(|e| e.replace(tensor)).is_some() {
                return Err(Error::input(
                    what,
                    format!("state entry `{entry}` given twice"),
                ));
            }
        }
        let mut state = BTreeMap::new();
        for (param, [m, v, step, v_max]) in parts {
            let missing =
                |e: &str| Error::input(what, format!("state of `{param}` lacks `{param}.{e}`"));
            let (m, v, step) = (
                m.ok_or_else(|| missing("exp_avg"))?,
                v.ok_or_else(|| missing("exp_avg_sq"))?,
                step.ok_or_else(|| missing("step"))?,
            );
            let v_max = match self.amsgrad {
                true => Some(v_max.ok_or_else(|| missing("max_exp_avg_sq"))?),
                false => None,
            };
            for (entry, t) in [("exp_avg_sq", Some(&v)), ("max_exp_avg_sq", v_max.as_ref())] {
                if let Some(t) = t.filter(|t| t.shape() != m.shape()) {
                    return Err(Error::shape(
                        format!("{what} ({param}.{entry})"),
                        fmt_shape(m.shape()),
                        t.shape(),
                    ));
                }
            }
            let steps = match step.shape() {
                [] => step.first().map_or(f64::NAN, |x| x.as_f64()),
                other => {
                    return Err(Error::shape(
                        format!("{what} ({param}.step)"),
                        "[] (a 0-d tensor)",
                        other,
                    ))
                }
            };
            if !(steps >= 0.0 && steps.fract() == 0.0 && steps < 2f64.powi(53)) {
                return Err(Error::input(
                    what,
                    format!("`{param}.step` = {steps} is not a step count"),
                ));
            }
            let moments = Moments {
                steps: steps as u64,
                step,
                exp_avg: m,
                exp_avg_sq: v,
                max_exp_avg_sq: v_max,
            };
            state.insert(param, moments);
        }
        self.state = state;
        Ok(())
    }
}

/// Generates an Adam-family optimizer wrapping [`Core`].
macro_rules! adam_optimizer {
    ($(#[$doc:meta])* $name:ident, $config:ident, $kind:literal, $decoupled:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name<T: Float> {
            core: Core<T>,
        }

        impl<T: Float> $name<T> {
            #[doc = concat!("A `", $kind, "` optimizer; errors when `lr <= 0`, a beta is outside `[0, 1)`, ")]
            /// or `eps` or the weight decay is negative (or anything is not finite).
            pub fn new(cfg: $config) -> Result<Self> {
                let flags = (cfg.amsgrad, cfg.maximize);
                let core = Core::new($kind, $decoupled, cfg.lr, cfg.betas, cfg.eps, cfg.weight_decay, flags)?;
                Ok($name { core })
            }

            /// The configuration, with the current learning rate.
            pub fn config(&self) -> $config {
                let c = &self.core;
                $config {
                    lr: c.lr,
                    betas: c.betas,
                    eps: c.eps,
                    weight_decay: c.weight_decay,
                    amsgrad: c.amsgrad,
                    maximize: c.maximize,
                }
            }
        }

        impl<T: Float> Optimizer<T> for $name<T> {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn update(&mut self, name: &str, param: &mut Param<T>) -> Result<()> {
                self.core.update(name, param)
            }

            fn lr(&self) -> f64 {
                self.core.lr
            }

            fn set_lr(&mut self, lr: f64) {
                self.core.lr = lr;
            }

            fn visit_state(&self, f: &mut dyn FnMut(&str, &Tensor<T>)) {
                self.core.visit_state(f)
            }

            fn load_state(&mut self, entries: Vec<(String, Tensor<T>)>) -> Result<()> {
                self.core.load_state(entries)
            }

            fn reset(&mut self) {
                self.core.state.clear();
            }
        }
    };
}

adam_optimizer!(
    /// Adam (`torch.optim.Adam`) with coupled L2 weight decay.
    Adam,
    AdamConfig,
    "Adam",
    false
);

adam_optimizer!(
    /// AdamW (`torch.optim.AdamW`): Adam with decoupled weight decay `p *= 1 - lr·wd`
    /// applied before the moment update.
    AdamW,
    AdamWConfig,
    "AdamW",
    true
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::from_vec;
    use crate::testutil::{assert_close, parity};

    fn run_case(file: &str, opt: &mut dyn Optimizer<f64>) {
        let (_, t) = parity(file);
        let mut p = Param::new(t["param_initial"].clone());
        for step in 1..=3 {
            p.grad = t[&format!("grad_{step}")].clone();
            opt.update("w", &mut p).unwrap();
            assert_close(
                &format!("{file} step {step} param"),
                &p.value,
                &t[&format!("param_step_{step}")],
            );
            let state: BTreeMap<String, Tensor<f64>> = opt.state().into_iter().collect();
            let names: Vec<&str> = state.keys().map(String::as_str).collect();
            assert_eq!(names, ["w.exp_avg", "w.exp_avg_sq", "w.step"]);
            for entry in ["exp_avg", "exp_avg_sq"] {
                let want = &t[&format!("state_step_{step}.{entry}")];
                assert_close(
                    &format!("{file} step {step} {entry}"),
                    &state[&format!("w.{entry}")],
                    want,
                );
            }
            assert_eq!(state["w.step"], from_vec(&[], vec![step as f64]));
        }
    }

    fn config(file: &str) -> (f64, (f64, f64), f64, f64) {
        let (cfg, _) = parity(file);
        let betas = (
            cfg["betas"][0].as_f64().unwrap(),
            cfg["betas"][1].as_f64().unwrap(),
        );
        let f = |k: &str| cfg[k].as_f64().unwrap();
        (f("lr"), betas, f("eps"), f("weight_decay"))
    }

    #[test]
    fn adam_matches_pytorch() {
        let (lr, (b1, b2), eps, wd) = config("adam_000.safetensors");
        let mut opt =
            Adam::new(AdamConfig::new(lr).betas(b1, b2).eps(eps).weight_decay(wd)).unwrap();
        run_case("adam_000.safetensors", &mut opt);
    }

    #[test]
    fn adamw_matches_pytorch() {
        let (lr, (b1, b2), eps, wd) = config("adamw_000.safetensors");
        let mut opt =
            AdamW::new(AdamWConfig::new(lr).betas(b1, b2).eps(eps).weight_decay(wd)).unwrap();
        run_case("adamw_000.safetensors", &mut opt);
    }

    #[test]
    fn first_step_by_hand() {
        // Step 1: m̂ = g, v̂ = g², so p moves by lr · g / (|g| + eps) = lr · sign(g) (eps = 0).
        let mut opt = Adam::<f64>::new(AdamConfig::new(0.01).eps(0.0)).unwrap();
        let mut p = Param::new(from_vec(&[2], vec![1.0, 1.0]));
        p.grad = from_vec(&[2], vec![3.0, -0.5]);
        opt.update("p", &mut p).unwrap();
        assert!(
            (p.value[0] - 0.99).abs() < 1e-15 && (p.value[1] - 1.01).abs() < 1e-15,
            "{}",
            p.value
        );
        // Coupled decay: g = 0 + 0.5 · 2 = 1 > 0, so p = 2 - lr.
        let mut opt = Adam::<f64>::new(AdamConfig::new(0.01).eps(0.0).weight_decay(0.5)).unwrap();
        let mut p = Param::new(from_vec(&[1], vec![2.0]));
        opt.update("p", &mut p).unwrap();
        assert!((p.value[0] - 1.99).abs() < 1e-15);
        // AdamW: p = 2 · (1 - 0.01 · 0.5) = 1.99, then minus lr · sign(g) with g = 1.
        let mut opt = AdamW::<f64>::new(AdamWConfig::new(0.01).eps(0.0).weight_decay(0.5)).unwrap();
        p.value.fill(2.0);
        p.grad.fill(1.0);
        opt.update("p", &mut p).unwrap();
        assert!((p.value[0] - 1.98).abs() < 1e-15);
        assert_eq!(AdamWConfig::new(1e-3).weight_decay, 0.01);
        assert_eq!(AdamConfig::new(1e-3).weight_decay, 0.0);
    }

    #[test]
    fn f32_agrees_with_f64() {
        let (_, t) = parity("adamw_000.safetensors");
        let mut o64 = AdamW::<f64>::new(AdamWConfig::new(1e-2)).unwrap();
        let mut o32 = AdamW::<f32>::new(AdamWConfig::new(1e-2)).unwrap();
        let mut p64 = Param::new(t["param_initial"].clone());
        let mut p32 = Param::new(t["param_initial"].mapv(|x| x as f32));
        for step in 1..=3 {
            p64.grad = t[&format!("grad_{step}")].clone();
            p32.grad = p64.grad.mapv(|x| x as f32);
            o64.update("w", &mut p64).unwrap();
            o32.update("w", &mut p32).unwrap();
        }
        assert!(p32
            .value
            .iter()
            .zip(&p64.value)
            .all(|(&a, &b)| (a as f64 - b).abs() < 1e-5 * (1.0 + b.abs())));
    }

    #[test]
    fn amsgrad_state_round_trips_and_is_required() {
        let cfg = AdamConfig::new(1e-2).amsgrad(true);
        let mut a = Adam::<f64>::new(cfg).unwrap();
        let mut pa = Param::new(Tensor::from_elem(ndarray::IxDyn(&[3]), 1.0));
        // A large gradient, then small ones: v falls below its maximum, which keeps dividing.
        for scale in [10.0, 0.1] {
            pa.grad = Tensor::from_elem(ndarray::IxDyn(&[3]), scale);
            a.update("w", &mut pa).unwrap();
        }
        let state = a.state();
        let get = |name: &str| state.iter().find(|(n, _)| n == name).unwrap().1.clone();
        let (v, v_max) = (get("w.exp_avg_sq"), get("w.max_exp_avg_sq"));
        assert!(v_max.iter().zip(&v).all(|(w, v)| w > v), "{v_max} vs {v}");
        let mut b = Adam::<f64>::new(cfg).unwrap();
        b.load_state(state.clone()).unwrap();
        let mut pb = pa.clone();
        for (opt, p) in [(&mut a, &mut pa), (&mut b, &mut pb)] {
            p.grad = Tensor::from_elem(ndarray::IxDyn(&[3]), 0.1);
            opt.update("w", p).unwrap();
        }
        assert_eq!(pa.value, pb.value);
        // Without its maximum the state is incomplete; without AMSGrad the entry is unknown.
        let without: Vec<_> = state
            .iter()
            .filter(|(n, _)| !n.ends_with("max_exp_avg_sq"))
            .cloned()
            .collect();
        assert!(matches!(
            b.load_state(without),
            Err(Error::InvalidInput { .. })
        ));
        let mut plain = Adam::<f64>::new(AdamConfig::new(1e-2)).unwrap();
        assert!(matches!(
            plain.load_state(state),
            Err(Error::InvalidInput { .. })
        ));
    }

    #[test]
    fn state_round_trips_through_load_state() {
        let (_, t) = parity("adam_000.safetensors");
        let mut a = Adam::<f64>::new(AdamConfig::new(1e-3)).unwrap();
        let mut pa = Param::new(t["param_initial"].clone());
        pa.grad = t["grad_1"].clone();
        a.update("0.weight", &mut pa).unwrap();
        let mut b = Adam::<f64>::new(AdamConfig::new(1e-3)).unwrap();
        b.load_state(a.state()).unwrap();
        let mut pb = pa.clone();
        for opt_p in [(&mut a, &mut pa), (&mut b, &mut pb)] {
            opt_p.1.grad = t["grad_2"].clone();
            opt_p.0.update("0.weight", opt_p.1).unwrap();
        }
        assert_eq!(pa.value, pb.value);
        let step = b
            .state()
            .into_iter()
            .find(|(n, _)| n == "0.weight.step")
            .unwrap()
            .1;
        assert_eq!(step.first().copied(), Some(2.0));

        let state = a.state();
        let without = |drop: &str| {
            state
                .iter()
                .filter(|(n, _)| !n.ends_with(drop))
                .cloned()
                .collect::<Vec<_>>()
        };
        assert!(b.load_state(without(".step")).is_err());
        assert!(b.load_state(without(".exp_avg")).is_err());
        let mut bad_step = state.clone();
        bad_step
            .iter_mut()
            .find(|(n, _)| n.ends_with(".step"))
            .unwrap()
            .1
            .fill(1.5);
        assert!(b.load_state(bad_step).is_err());
        let mut extra = state.clone();
        extra.push(("0.weight.momentum_buffer".into(), t["grad_1"].clone()));
        assert!(b.load_state(extra).is_err());
        // The failed loads left the previous state in place.
        assert_eq!(b.state().len(), 3);
        b.reset();
        assert!(b.state().is_empty());
    }

    #[test]
    fn bad_configs_are_rejected() {
        let bad = [
            AdamConfig::new(-1e-3),
            AdamConfig::new(0.0),
            AdamConfig::new(1e-3).betas(1.0, 0.999),
            AdamConfig::new(1e-3).betas(0.9, -0.1),
            AdamConfig::new(1e-3).eps(-1e-8),
            AdamConfig::new(1e-3).weight_decay(f64::INFINITY),
        ];
        for cfg in bad {
            assert!(
                matches!(Adam::<f64>::new(cfg), Err(Error::InvalidConfig { .. })),
                "{cfg:?}"
            );
        }
        assert!(AdamW::<f64>::new(AdamWConfig::new(1e-3).weight_decay(-0.01)).is_err());
        let mut opt = AdamW::<f64>::new(AdamWConfig::new(1e-3)).unwrap();
        assert_eq!(opt.kind(), "AdamW");
        opt.set_lr(f64::NAN);
        let mut p = Param::new(from_vec(&[1], vec![1.0]));
        assert!(opt.update("p", &mut p).is_err());
        assert!(opt.state().is_empty());
    }
}
