//! Finite-difference gradient checks for any [`Layer`] or [`Merge`], in `f64`.
//!
//! The scalar checked is `L(x, θ) = Σ G ⊙ f(x, θ)` for a fixed random upstream gradient `G`.
//! Its analytic gradients are exactly what `backward(G)` returns (input) and accumulates
//! (parameters); its numeric gradients are the central differences
//! `(L(v + ε) - L(v - ε)) / 2ε`, one coordinate `v` at a time. The same tool serves users who
//! write their own layers.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::layer::{Layer, Merge, Slot, SlotMut};
use crate::rng::Rng64;
use crate::tensor::Tensor;
use rand_distr::{Distribution, StandardNormal};

/// Settings of a gradient check.
#[derive(Clone, Copy, Debug)]
pub struct GradCheck {
    /// Step of the central difference.
    pub eps: f64,
    /// Allowed error: `|analytic - numeric| <= tol * max(1, |numeric|)`.
    pub tol: f64,
    /// At most this many coordinates are checked per tensor (chosen at random beyond that).
    pub max_coords: usize,
    /// Seed for `G` and for choosing coordinates.
    pub seed: u64,
}

impl Default for GradCheck {
    fn default() -> Self {
        GradCheck {
            eps: 1e-6,
            tol: 1e-6,
            max_coords: 200,
            seed: 0,
        }
    }
}

/// The worst disagreement found, with where it was.
#[derive(Clone, Debug)]
pub struct GradReport {
    /// The largest `|analytic - numeric| / max(1, |numeric|)` over all checked coordinates.
    pub max_err: f64,
    /// The tensor (`input`, `input2`, or a parameter name) where it occurred.
    pub worst: String,
    /// How many coordinates were compared.
    pub coords: usize,
}

impl GradReport {
    fn new() -> Self {
        GradReport {
            max_err: 0.0,
            worst: String::new(),
            coords: 0,
        }
    }

    fn record(&mut self, name: &str, analytic: f64, numeric: f64) {
        let err = (analytic - numeric).abs() / numeric.abs().max(1.0);
        let err = if err.is_nan() { f64::INFINITY } else { err };
        self.coords += 1;
        if err > self.max_err || self.worst.is_empty() {
            self.max_err = self.max_err.max(err);
            self.worst = format!("{name} (analytic {analytic:.6e}, numeric {numeric:.6e})");
        }
    }

    /// `Ok(self)` when the error is within `tol`, otherwise a message naming the worst tensor.
    pub fn within(self, tol: f64) -> Result<Self, String> {
        if self.max_err <= tol {
            Ok(self)
        } else {
            Err(format!(
                "gradient check failed: max_err {:.3e} > {tol:.1e} at {}",
                self.max_err, self.worst
            ))
        }
    }
}

fn random_like(shape: &[usize], rng: &mut Rng64) -> Tensor<f64> {
    Tensor::from_shape_simple_fn(ndarray::IxDyn(shape), || StandardNormal.sample(rng))
}

fn coords(len: usize, max: usize, rng: &mut Rng64) -> Vec<usize> {
    if len <= max {
        (0..len).collect()
    } else {
        (0..max).map(|_| rng.below(len)).collect()
    }
}

/// Element `i` of `t` in row-major order, whatever its memory layout (a caller's input or a
/// layer's parameter may be, say, transposed); NaN past the end, which fails the check.
fn at(t: &Tensor<f64>, i: usize) -> f64 {
    t.iter().nth(i).copied().unwrap_or(f64::NAN)
}

/// Sets element `i` (row-major order) of `t` to `f(old)`.
fn update(t: &mut Tensor<f64>, i: usize, f: impl FnOnce(f64) -> f64) {
    if let Some(v) = t.iter_mut().nth(i) {
        *v = f(*v);
    }
}

fn dot(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    a.iter().zip(b.iter()).map(|(x, y)| x * y).sum()
}

/// Checks a layer's `backward` (input gradient and every parameter gradient) against
/// central differences at `input`. The layer must be deterministic between forwards
/// (put dropout in eval mode or check it separately).
///
/// ```
/// use convnet::gradcheck::{check_layer, GradCheck};
/// use convnet::layers::Tanh;
/// let x = ndarray::Array::from_shape_fn((2, 3), |(i, j)| i as f64 - j as f64 * 0.5).into_dyn();
/// let report = check_layer(&mut Tanh::new(), &x, GradCheck::default()).unwrap();
/// assert!(report.max_err < 1e-6);
/// ```
pub fn check_layer(
    layer: &mut dyn Layer<f64>,
    input: &Tensor<f64>,
    opts: GradCheck,
) -> Result<GradReport, String> {
    let mut rng = Rng64::seed(opts.seed);
    let out = layer.forward(input).map_err(|e| e.to_string())?;
    let g = random_like(out.shape(), &mut rng);
    layer.zero_grad();
    let grad_input = layer.backward(&g).map_err(|e| e.to_string())?;
    if grad_input.shape() != input.shape() {
        return Err(format!(
            "grad_input shape {:?} != input shape {:?}",
            grad_input.shape(),
            input.shape()
        ));
    }
    let mut analytic_params: Vec<(String, Tensor<f64>)> = Vec::new();
    layer.visit(&mut |name, slot| {
        if let Slot::Param(p) = slot {
            analytic_params.push((name.to_string(), p.grad.clone()));
        }
    });

    let mut report = GradReport::new();
    let loss = |layer: &mut dyn Layer<f64>, x: &Tensor<f64>| -> Result<f64, String> {
        Ok(dot(&g, &layer.forward(x).map_err(|e| e.to_string())?))
    };

    let mut x = input.clone();
    for i in coords(x.len(), opts.max_coords, &mut rng) {
        let orig = at(&x, i);
        update(&mut x, i, |_| orig + opts.eps);
        let up = loss(layer, &x)?;
        update(&mut x, i, |_| orig - opts.eps);
        let down = loss(layer, &x)?;
        update(&mut x, i, |_| orig);
        report.record("input", at(&grad_input, i), (up - down) / (2.0 * opts.eps));
    }

    for (name, analytic) in &analytic_params {
        for i in coords(analytic.len(), opts.max_coords, &mut rng) {
            let nudge = |layer: &mut dyn Layer<f64>, delta: f64| {
                layer.visit_mut(&mut |n, slot| {
                    if let SlotMut::Param(p) = slot {
                        if n == name {
                            update(&mut p.value, i, |v| v + delta);
                        }
                    }
                })
            };
            nudge(layer, opts.eps);
            let up = loss(layer, input)?;
            nudge(layer, -2.0 * opts.eps);
            let down = loss(layer, input)?;
            nudge(layer, opts.eps);
            report.record(name, at(analytic, i), (up - down) / (2.0 * opts.eps));
        }
    }
    report.within(opts.tol)
}

/// Checks a [`Merge`]'s `backward` against central differences for every input.
pub fn check_merge(
    merge: &mut dyn Merge<f64>,
    inputs: &[Tensor<f64>],
    opts: GradCheck,
) -> Result<GradReport, String> {
    let mut rng = Rng64::seed(opts.seed);
    let refs: Vec<&Tensor<f64>> = inputs.iter().collect();
    let out = merge.forward(&refs).map_err(|e| e.to_string())?;
    let g = random_like(out.shape(), &mut rng);
    let grads = merge.backward(&g).map_err(|e| e.to_string())?;
    if grads.len() != inputs.len() {
        return Err(format!(
            "{} gradients for {} inputs",
            grads.len(),
            inputs.len()
        ));
    }
    let mut report = GradReport::new();
    let mut xs: Vec<Tensor<f64>> = inputs.to_vec();
    for (k, grad) in grads.iter().enumerate() {
        let len = match xs.get(k) {
            Some(x) if x.shape() == grad.shape() => x.len(),
            other => {
                return Err(format!(
                    "grad {k} shape {:?} != input shape {:?}",
                    grad.shape(),
                    other.map(|x| x.shape())
                ))
            }
        };
        for i in coords(len, opts.max_coords, &mut rng) {
            let mut eval = |xs: &[Tensor<f64>]| -> Result<f64, String> {
                let refs: Vec<&Tensor<f64>> = xs.iter().collect();
                Ok(dot(&g, &merge.forward(&refs).map_err(|e| e.to_string())?))
            };
            let nudge = |xs: &mut [Tensor<f64>], f: &dyn Fn(f64) -> f64| {
                if let Some(x) = xs.get_mut(k) {
                    update(x, i, f);
                }
            };
            let orig = xs.get(k).map_or(f64::NAN, |x| at(x, i));
            nudge(&mut xs, &|_| orig + opts.eps);
            let up = eval(&xs)?;
            nudge(&mut xs, &|_| orig - opts.eps);
            let down = eval(&xs)?;
            nudge(&mut xs, &|_| orig);
            report.record(
                &format!("input{k}"),
                at(grad, i),
                (up - down) / (2.0 * opts.eps),
            );
        }
    }
    report.within(opts.tol)
}

/// A tensor of standard-normal values with the given shape, drawn from `seed`: handy inputs
/// for gradient checks.
pub fn random_tensor(shape: &[usize], seed: u64) -> Tensor<f64> {
    random_like(shape, &mut Rng64::seed(seed))
}
