//! Seeing what the network sees: saliency maps and Grad-CAM, from the hand-written backward.
//!
//! Both start from the score `y_c` the model gives class `c` for one image (the output
//! *before* any softmax, so a model should end in its last `Linear`), and send the one-hot
//! gradient `dy/dy_c` back through the layers' own `backward`:
//!
//! ```text
//! saliency (Simonyan et al. 2013):
//!     S[i, j] = max over channels k of | d y_c / d x[k, i, j] |            [H, W]
//! Grad-CAM (Selvaraju et al. 2017), at an inner layer with activations A [K, h, w]:
//!     α_k     = (1 / hw) Σ_ij  d y_c / d A[k, i, j]     (one weight per channel)
//!     L[i, j] = ReLU( Σ_k α_k A[k, i, j] )                                  [h, w]
//!     heat    = bilinear upsampling of L to the input's [H, W]
//! ```
//!
//! Grad-CAM needs the activations and the gradient *inside* the model. A [`Probe`] reaches
//! them: a [`Sequential`] is split at a child (`"4"`, or `"layer4"` in a ResNet), its first
//! part run forward, then the rest; a [`Graph`] keeps every node's value and hands back the
//! gradient arriving at a node ([`Graph::backward_all_at`]).
//!
//! ```
//! use convnet::explain::{grad_cam, saliency};
//! use convnet::prelude::*;
//! # fn main() -> convnet::Result<()> {
//! let mut net = convnet::zoo::lenet5_modern::<f64>(10)?;
//! let image = Tensor::<f64>::from_elem(ndarray::IxDyn(&[1, 28, 28]), 0.5);
//!
//! let s = saliency(&mut net, &image, 7)?; // how much each pixel moves the score of "7"
//! assert_eq!(s.shape(), &[28, 28]);
//!
//! // Grad-CAM at child "5", the second max pool: 16 maps of 5x5, one weight per map.
//! let cam = grad_cam(&mut net, "5", &image, 7)?;
//! assert_eq!(cam.weights.len(), 16);
//! assert_eq!(cam.coarse.shape(), &[5, 5]);
//! assert_eq!(cam.heat.shape(), &[28, 28]);
//! # Ok(())
//! # }
//! ```
//!
//! Every function here runs the model in [`Mode::Eval`] (and leaves it there), and sets the
//! parameter gradients back to zero when done: explaining a prediction never changes it.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::error::{Error, Result};
use crate::layer::{Layer, Mode};
use crate::model::{Graph, Sequential};
use crate::tensor::{Float, Tensor};
use ndarray::{Axis, IxDyn};

/// A model whose inner activations and gradients can be reached by name, for Grad-CAM.
///
/// Implemented for [`Sequential`] (the name of a direct child: its index `"4"` or the name
/// given with [`Sequential::add_named`], such as `"layer4"`) and [`Graph`] (a node name).
pub trait Probe<T: Float>: Layer<T> {
    /// Runs the model forward (caching for backward, as [`Layer::forward`]) and returns its
    /// output together with the output of the inner layer `at`.
    fn forward_probe(&mut self, input: &Tensor<T>, at: &str) -> Result<(Tensor<T>, Tensor<T>)>;

    /// Back-propagates dL/d(output) of the last [`Probe::forward_probe`] and returns
    /// dL/d(output of `at`). Parameter gradients accumulate as in [`Layer::backward`].
    fn backward_probe(&mut self, grad_output: &Tensor<T>, at: &str) -> Result<Tensor<T>>;

    /// The names [`Probe::forward_probe`] accepts, in order.
    fn probe_names(&self) -> Vec<String>;
}

fn unknown(at: &str, names: &[String]) -> Error {
    Error::input(
        "explain::Probe",
        format!("no inner layer named `{at}` (names: {})", names.join(", ")),
    )
}

/// The index of the child named `at`.
fn child_index<T: Float>(model: &Sequential<T>, at: &str) -> Result<usize> {
    model
        .names()
        .iter()
        .position(|n| n == at)
        .ok_or_else(|| unknown(at, model.names()))
}

impl<T: Float> Probe<T> for Sequential<T> {
    /// Forwards children `0..=at`, keeps that value, then forwards the rest.
    fn forward_probe(&mut self, input: &Tensor<T>, at: &str) -> Result<(Tensor<T>, Tensor<T>)> {
        let i = child_index(self, at)?;
        let (head, tail) = self.layers_mut().split_at_mut(i + 1);
        let mut x = input.clone();
        for layer in head {
            x = layer.forward(&x)?;
        }
        let activation = x.clone();
        for layer in tail {
            x = layer.forward(&x)?;
        }
        Ok((x, activation))
    }

    /// Back-propagates through the children after `at` only: the gradient has reached `at`.
    fn backward_probe(&mut self, grad_output: &Tensor<T>, at: &str) -> Result<Tensor<T>> {
        let i = child_index(self, at)?;
        let mut g = grad_output.clone();
        for layer in self.layers_mut().iter_mut().skip(i + 1).rev() {
            g = layer.backward(&g)?;
        }
        Ok(g)
    }

    fn probe_names(&self) -> Vec<String> {
        self.names().to_vec()
    }
}

impl<T: Float> Probe<T> for Graph<T> {
    /// Runs [`Graph::forward_all`] and reads node `at`'s value; the output is the first one.
    fn forward_probe(&mut self, input: &Tensor<T>, at: &str) -> Result<(Tensor<T>, Tensor<T>)> {
        if !self.node_names().contains(&at) {
            return Err(unknown(at, &self.probe_names()));
        }
        let output = self.forward_all(input)?.swap_remove(0);
        let activation = self
            .node_output(at)
            .cloned()
            .ok_or_else(|| unknown(at, &self.probe_names()))?;
        Ok((output, activation))
    }

    /// [`Graph::backward_all_at`] with the gradient on the first output only.
    fn backward_probe(&mut self, grad_output: &Tensor<T>, at: &str) -> Result<Tensor<T>> {
        let mut grads: Vec<Option<&Tensor<T>>> = vec![None; self.output_names().len()];
        if let Some(first) = grads.first_mut() {
            *first = Some(grad_output);
        }
        Ok(self.backward_all_at(&grads, at)?.1)
    }

    fn probe_names(&self) -> Vec<String> {
        self.node_names().into_iter().map(String::from).collect()
    }
}

/// The usual Grad-CAM layer of a [`Sequential`]: the name of its last child whose output for
/// an input of shape `input` is a feature map `[N, K, h, w]` larger than 1x1 (LeNet-5's
/// second max pool, a ResNet's `layer4`). An [`Error::InvalidInput`] if there is none.
pub fn last_spatial_layer<T: Float>(model: &Sequential<T>, input: &[usize]) -> Result<String> {
    let mut shape = input.to_vec();
    let mut found = None;
    for (name, layer) in model.names().iter().zip(model.layers()) {
        shape = layer.output_shape(&shape)?;
        if let [_, _, h, w] = shape[..] {
            if h * w > 1 {
                found = Some(name.clone());
            }
        }
    }
    found.ok_or_else(|| {
        Error::input(
            "explain::last_spatial_layer",
            format!(
                "no child of the model outputs feature maps larger than 1x1 for input {input:?}"
            ),
        )
    })
}

/// `[C, H, W]` or `[1, C, H, W]` as a batch of one `[1, C, H, W]`.
fn batch_of_one<T: Float>(what: &str, image: &Tensor<T>) -> Result<Tensor<T>> {
    match image.shape() {
        [_, _, _] => Ok(image.clone().insert_axis(Axis(0))),
        [1, _, _, _] => Ok(image.clone()),
        other => Err(Error::shape(
            what,
            "one image, [C, H, W] or [1, C, H, W]",
            other,
        )),
    }
}

/// The one-hot gradient dy/dy_c for an output `[1, K]`, or why `class` cannot be explained.
fn class_seed<T: Float>(what: &str, output: &Tensor<T>, class: usize) -> Result<Tensor<T>> {
    let classes = match output.shape() {
        [1, k] => *k,
        other => {
            return Err(Error::shape(
                what,
                "a model whose output is one row of class scores [1, K]",
                other,
            ))
        }
    };
    if class >= classes {
        return Err(Error::input(
            what,
            format!(
                "class {class} does not exist: the model scores {classes} classes (0 to {})",
                classes.saturating_sub(1)
            ),
        ));
    }
    let mut seed = Tensor::zeros(IxDyn(&[1, classes]));
    if let Some(v) = seed.get_mut([0, class]) {
        *v = T::one();
    }
    Ok(seed)
}

/// The gradient of class `class`'s score with respect to the input image, `d y_c / d x`, with
/// the image's shape (`[C, H, W]` or `[1, C, H, W]`). Works on any model whose output is
/// `[1, K]` for one image. The model is switched to [`Mode::Eval`]; parameter gradients are
/// zeroed afterwards.
pub fn input_gradient<T: Float>(
    model: &mut dyn Layer<T>,
    image: &Tensor<T>,
    class: usize,
) -> Result<Tensor<T>> {
    let x = batch_of_one("explain::input_gradient", image)?;
    model.set_mode(Mode::Eval);
    let output = model.forward(&x)?;
    let seed = class_seed("explain::input_gradient", &output, class)?;
    let grad = model.backward(&seed);
    model.zero_grad();
    let grad = grad?;
    if grad.shape() != x.shape() {
        return Err(Error::shape(
            "explain::input_gradient (model backward)",
            format!("a gradient shaped like the input {:?}", x.shape()),
            grad.shape(),
        ));
    }
    Ok(grad.into_shape_with_order(IxDyn(image.shape()))?)
}

/// The saliency map of Simonyan et al.: for each pixel, the largest absolute value over the
/// channels of `d y_c / d x`, shape `[H, W]`. Bright pixels are those whose change would
/// change the class score most. See [`input_gradient`] for the conditions.
pub fn saliency<T: Float>(
    model: &mut dyn Layer<T>,
    image: &Tensor<T>,
    class: usize,
) -> Result<Tensor<T>> {
    let grad = input_gradient(model, image, class)?;
    let grad = batch_of_one("explain::saliency", &grad)?;
    let per_channel = grad.index_axis(Axis(0), 0);
    Ok(per_channel.fold_axis(Axis(0), T::zero(), |&m, &g| m.max(g.abs())))
}

/// A Grad-CAM explanation of one class for one image.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCam<T: Float> {
    /// `α_k`: each channel's weight, the spatial mean of `d y_c / d A[k]`.
    pub weights: Vec<T>,
    /// `ReLU(Σ_k α_k A[k])` at the layer's resolution `[h, w]`.
    pub coarse: Tensor<T>,
    /// `coarse` upsampled bilinearly to the input's `[H, W]` (not normalised; see
    /// [`normalize`]).
    pub heat: Tensor<T>,
}

/// Grad-CAM of class `class` for one image (`[C, H, W]` or `[1, C, H, W]`) at the output of
/// the inner layer `at` (a child of a [`Sequential`], a node of a [`Graph`]), which must be a
/// feature map `[1, K, h, w]`. Usually the last one with a spatial extent above 1x1. The model
/// is switched to [`Mode::Eval`]; parameter gradients are zeroed afterwards.
pub fn grad_cam<T: Float, M: Probe<T> + ?Sized>(
    model: &mut M,
    at: &str,
    image: &Tensor<T>,
    class: usize,
) -> Result<GradCam<T>> {
    let x = batch_of_one("explain::grad_cam", image)?;
    model.set_mode(Mode::Eval);
    let (output, activation) = model.forward_probe(&x, at)?;
    let seed = class_seed("explain::grad_cam", &output, class)?;
    let grad = model.backward_probe(&seed, at);
    model.zero_grad();
    let grad = grad?;
    let &[_, _, h, w] = x.shape() else {
        return Err(Error::shape("explain::grad_cam", "[1, C, H, W]", x.shape()));
    };
    grad_cam_from(&activation, &grad, [h, w])
}

/// Grad-CAM from activations `A` and gradients `d y_c / d A` already at hand (both
/// `[1, K, h, w]` or `[K, h, w]`), upsampled to `size = [H, W]`. [`grad_cam`] calls it; a
/// model that is neither a `Sequential` nor a `Graph` can gather the two tensors itself.
pub fn grad_cam_from<T: Float>(
    activations: &Tensor<T>,
    gradients: &Tensor<T>,
    size: [usize; 2],
) -> Result<GradCam<T>> {
    let what = "explain::grad_cam";
    let maps = |t: &Tensor<T>| -> Result<Tensor<T>> {
        match t.shape() {
            [1, _, h, w] if *h > 0 && *w > 0 => Ok(t.index_axis(Axis(0), 0).to_owned()),
            [_, h, w] if *h > 0 && *w > 0 => Ok(t.clone()),
            other => Err(Error::shape(
                what,
                "feature maps [1, K, h, w] with h, w >= 1 (pick a conv or pool layer, not a flattened or fully connected one)",
                other,
            )),
        }
    };
    let a = maps(activations)?;
    let g = maps(gradients)?;
    if a.shape() != g.shape() {
        return Err(Error::shape(
            what,
            format!("gradients shaped like the activations {:?}", a.shape()),
            g.shape(),
        ));
    }
    let weights: Vec<T> = g
        .outer_iter()
        .map(|gk| gk.mean().unwrap_or_else(T::zero))
        .collect();
    let &[_, h, w] = a.shape() else {
        return Err(Error::shape(what, "feature maps [K, h, w]", a.shape()));
    };
    let mut coarse = Tensor::<T>::zeros(IxDyn(&[h, w]));
    for (ak, &alpha) in a.outer_iter().zip(&weights) {
        coarse.scaled_add(alpha, &ak);
    }
    coarse.mapv_inplace(|v| if v > T::zero() { v } else { T::zero() });
    let heat = upsample_bilinear(&coarse, size)?;
    Ok(GradCam {
        weights,
        coarse,
        heat,
    })
}

/// Source taps of a 1-D bilinear resampling from `n_in` to `n_out` cells, as PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False)`: output cell `o` reads position
/// `(o + 0.5) · n_in / n_out - 0.5` (clamped at 0), between cells `i0` and `i1` with weight
/// `λ` on `i1`.
fn bilinear_taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f64)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            (i0, i1, src - i0 as f64)
        })
        .collect()
}

/// Resizes a map `[h, w]` to `size = [H, W]` by bilinear interpolation, exactly as PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False)` does.
///
/// ```
/// use convnet::explain::upsample_bilinear;
/// use convnet::Tensor;
/// let map = Tensor::<f64>::from_shape_vec(ndarray::IxDyn(&[1, 2]), vec![0.0, 1.0]).unwrap();
/// let up = upsample_bilinear(&map, [1, 4]).unwrap();
/// assert_eq!(up.iter().copied().collect::<Vec<_>>(), vec![0.0, 0.25, 0.75, 1.0]);
/// ```
// Indexing: the taps are below `h` and `w` (clamped to `n_in - 1`), and `r`, `c` run over `size`.
#[allow(clippy::indexing_slicing)]
pub fn upsample_bilinear<T: Float>(map: &Tensor<T>, size: [usize; 2]) -> Result<Tensor<T>> {
    let (h, w) = match map.shape() {
        [h, w] if *h > 0 && *w > 0 => (*h, *w),
        other => {
            return Err(Error::shape(
                "explain::upsample_bilinear",
                "a map [h, w] with h, w >= 1",
                other,
            ))
        }
    };
    if size[0] == 0 || size[1] == 0 {
        return Err(Error::input(
            "explain::upsample_bilinear",
            format!("target size {size:?} must be at least 1x1"),
        ));
    }
    crate::tensor::checked_numel("explain::upsample_bilinear", &size)?;
    let (rows, cols) = (bilinear_taps(h, size[0]), bilinear_taps(w, size[1]));
    let mut out = Tensor::<T>::zeros(IxDyn(&size));
    for (r, &(r0, r1, ly)) in rows.iter().enumerate() {
        for (c, &(c0, c1, lx)) in cols.iter().enumerate() {
            let v = |i: usize, j: usize| map[[i, j]].as_f64();
            let top = (1.0 - lx) * v(r0, c0) + lx * v(r0, c1);
            let bottom = (1.0 - lx) * v(r1, c0) + lx * v(r1, c1);
            out[[r, c]] = T::of((1.0 - ly) * top + ly * bottom);
        }
    }
    Ok(out)
}

/// Rescales a map to `[0, 1]`: `(x - min) / (max - min)`; a constant map becomes all zeros.
pub fn normalize<T: Float>(map: &Tensor<T>) -> Tensor<T> {
    let lo = map.iter().copied().fold(T::infinity(), T::min);
    let hi = map.iter().copied().fold(T::neg_infinity(), T::max);
    let range = hi - lo;
    if range > T::zero() && range.is_finite() {
        map.mapv(|v| (v - lo) / range)
    } else {
        map.mapv(|_| T::zero())
    }
}

/// The "jet" colour of a value in `[0, 1]` (clamped): dark blue at 0, through cyan, yellow
/// and red, to dark red at 1.
pub fn jet(v: f64) -> [u8; 3] {
    let v = if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
    let ramp = |centre: f64| (1.5 - (4.0 * v - centre).abs()).clamp(0.0, 1.0);
    [ramp(3.0), ramp(2.0), ramp(1.0)].map(|c| (c * 255.0).round() as u8)
}

/// Blends a heat map over an image: each pixel is `(1 - alpha) · image + alpha · jet(heat)`.
///
/// `image` is `[C, H, W]` with values in `[0, 1]` and 1 (grey) or 3 (RGB) channels; `heat` is
/// `[H, W]` with values in `[0, 1]` (see [`normalize`]). Returns `H · W · 3` bytes, RGB, row
/// by row, ready for a PNG encoder.
pub fn overlay<T: Float>(image: &Tensor<T>, heat: &Tensor<T>, alpha: f64) -> Result<Vec<u8>> {
    let what = "explain::overlay";
    let (c, h, w) = match image.shape() {
        [c @ (1 | 3), h, w] => (*c, *h, *w),
        other => return Err(Error::shape(what, "an image [1 or 3, H, W]", other)),
    };
    if heat.shape() != [h, w] {
        return Err(Error::shape(
            what,
            format!("a heat map [{h}, {w}]"),
            heat.shape(),
        ));
    }
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::input(
            what,
            format!("alpha {alpha} is not in [0, 1]"),
        ));
    }
    let mut rgb = Vec::with_capacity(h * w * 3);
    for i in 0..h {
        for j in 0..w {
            let colour = jet(heat[[i, j]].as_f64());
            for (k, &hot) in colour.iter().enumerate() {
                let base = image[[if c == 1 { 0 } else { k }, i, j]]
                    .as_f64()
                    .clamp(0.0, 1.0)
                    * 255.0;
                let v = (1.0 - alpha) * base + alpha * hot as f64;
                rgb.push(v.round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    Ok(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::random_tensor;
    use crate::layers::{
        Add, Conv2d, Conv2dConfig, Flatten, FlattenConfig, Linear, MaxPool2d, MaxPool2dConfig, ReLU,
    };
    use crate::model::GraphBuilder;

    /// A small conv net's layers with seeded random weights: conv-relu-pool-conv-relu-flatten-
    /// linear, for [2, 6, 6] images and 3 classes.
    fn small_layers(seed: u64) -> Vec<Box<dyn Layer<f64>>> {
        let linear = crate::layers::LinearConfig::new(4 * 3 * 3, 3).seed(seed + 2);
        vec![
            Box::new(Conv2d::new(Conv2dConfig::new(2, 3, 3).padding(1).seed(seed)).unwrap()),
            Box::new(ReLU::new()),
            Box::new(MaxPool2d::new(MaxPool2dConfig::new(2)).unwrap()),
            Box::new(Conv2d::new(Conv2dConfig::new(3, 4, 3).padding(1).seed(seed + 1)).unwrap()),
            Box::new(ReLU::new()),
            Box::new(Flatten::new(FlattenConfig::new()).unwrap()),
            Box::new(Linear::new(linear).unwrap()),
        ]
    }

    fn small_net(seed: u64) -> Sequential<f64> {
        let mut net = Sequential::new();
        for layer in small_layers(seed) {
            net.push(layer);
        }
        net
    }

    /// The class score by central differences on every input value.
    fn fd_input_gradient(net: &Sequential<f64>, x: &Tensor<f64>, class: usize) -> Tensor<f64> {
        let eps = 1e-6;
        let score = |x: &Tensor<f64>| {
            let b = x.clone().insert_axis(Axis(0));
            net.infer(&b).unwrap()[[0, class]]
        };
        let mut g = Tensor::zeros(x.raw_dim());
        for idx in ndarray::indices(x.shape()) {
            let mut plus = x.clone();
            plus[&idx] += eps;
            let mut minus = x.clone();
            minus[&idx] -= eps;
            g[&idx] = (score(&plus) - score(&minus)) / (2.0 * eps);
        }
        g
    }

    #[test]
    fn saliency_is_the_finite_difference_gradient_of_the_class_score() {
        for (seed, class) in [(1, 0), (5, 2)] {
            let mut net = small_net(seed);
            let x = random_tensor(&[2, 6, 6], seed + 10);
            let fd = fd_input_gradient(&net, &x, class);
            let g = input_gradient(&mut net, &x, class).unwrap();
            assert_eq!(g.shape(), &[2, 6, 6]);
            let err = (&g - &fd).mapv(f64::abs).fold(0.0f64, |m, &v| m.max(v));
            assert!(err < 1e-7, "max |analytic - fd| = {err}");
            assert!(
                fd.iter().any(|v| v.abs() > 1e-3),
                "the check must see a gradient"
            );
            let s = saliency(&mut net, &x, class).unwrap();
            assert_eq!(s.shape(), &[6, 6]);
            for i in 0..6 {
                for j in 0..6 {
                    let want = fd[[0, i, j]].abs().max(fd[[1, i, j]].abs());
                    assert!((s[[i, j]] - want).abs() < 1e-7);
                }
            }
            // Explaining leaves no parameter gradient behind.
            let mut any = false;
            net.visit(&mut |_, slot| {
                if let crate::layer::Slot::Param(p) = slot {
                    any |= p.grad.iter().any(|&v| v != 0.0);
                }
            });
            assert!(!any);
        }
    }

    /// Weights set by hand: x [1, 1, 4, 4] -> 1x1 conv with weights (1, 2) -> A = (x, 2x);
    /// the score of class 0 is Σ u·A0 + Σ v·A1, so dA0 = u, dA1 = v, α = (mean u, mean v) and
    /// the map is ReLU((mean u + 2 mean v) · x).
    #[test]
    fn grad_cam_matches_the_analytic_answer() {
        let conv = Conv2d::from_weights(
            Conv2dConfig::new(1, 2, 1),
            Tensor::from_shape_vec(IxDyn(&[2, 1, 1, 1]), vec![1.0, 2.0]).unwrap(),
            Some(Tensor::zeros(IxDyn(&[2]))),
        )
        .unwrap();
        let u: Vec<f64> = (0..16).map(|i| (i as f64 - 5.0) * 0.1).collect();
        let v: Vec<f64> = (0..16).map(|i| ((i * 7) % 5) as f64 * 0.3 - 0.2).collect();
        let mut fc = u.clone();
        fc.extend(&v);
        fc.extend(vec![1.0; 32]); // class 1, unused
        let linear = Linear::from_weights(
            Tensor::from_shape_vec(IxDyn(&[2, 32]), fc).unwrap(),
            Some(Tensor::zeros(IxDyn(&[2]))),
        )
        .unwrap();
        let mut net = Sequential::new()
            .add(conv)
            .add(ReLU::new())
            .add(Flatten::new(FlattenConfig::new()).unwrap())
            .add(linear);
        let x = Tensor::from_shape_vec(
            IxDyn(&[1, 4, 4]),
            (0..16).map(|i| 0.5 + i as f64 * 0.25).collect(),
        )
        .unwrap();
        let cam = grad_cam(&mut net, "1", &x, 0).unwrap();
        let (mu, mv) = (u.iter().sum::<f64>() / 16.0, v.iter().sum::<f64>() / 16.0);
        assert!((cam.weights[0] - mu).abs() < 1e-12 && (cam.weights[1] - mv).abs() < 1e-12);
        let k = mu + 2.0 * mv;
        for i in 0..4 {
            for j in 0..4 {
                let want = (k * x[[0, i, j]]).max(0.0);
                assert!((cam.coarse[[i, j]] - want).abs() < 1e-12);
                // Same size: the upsampling is the identity.
                assert!((cam.heat[[i, j]] - want).abs() < 1e-12);
            }
        }
        // Class 1 weighs both maps by 1: the map is 3x, all positive.
        let cam1 = grad_cam(&mut net, "1", &x, 1).unwrap();
        assert!((cam1.coarse[[2, 3]] - 3.0 * x[[0, 2, 3]]).abs() < 1e-12);
        // Negating the first map's weights flips the sign: ReLU then clears what was positive.
        assert!(k > 0.0 || cam.coarse.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn bilinear_upsampling_matches_pytorch_align_corners_false() {
        // 1-D: [a0, a1] -> [a0, 0.75 a0 + 0.25 a1, 0.25 a0 + 0.75 a1, a1].
        let m = Tensor::<f64>::from_shape_vec(IxDyn(&[2, 2]), vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        let up = upsample_bilinear(&m, [4, 4]).unwrap();
        let row = [0.0, 0.25, 0.75, 1.0];
        let col = [0.0, 0.5, 1.5, 2.0]; // the row offset is 2 per source row
        for i in 0..4 {
            for j in 0..4 {
                assert!((up[[i, j]] - (row[j] + col[i])).abs() < 1e-12);
            }
        }
        // Same size is the identity; shrinking averages neighbours (2 -> 1: centre 0.5).
        assert_eq!(upsample_bilinear(&m, [2, 2]).unwrap(), m);
        let one = upsample_bilinear(&m, [1, 1]).unwrap();
        assert!((one[[0, 0]] - 1.5).abs() < 1e-12);
        assert!(upsample_bilinear(&m, [0, 3]).is_err());
        assert!(upsample_bilinear(&Tensor::<f64>::zeros(IxDyn(&[2])), [3, 3]).is_err());
    }

    #[test]
    fn graph_probe_agrees_with_sequential_and_sums_fan_out() {
        // The same network as a Graph gives the same Grad-CAM as the Sequential.
        let mut seq = small_net(3);
        let x = random_tensor(&[2, 6, 6], 4);
        let want = grad_cam(&mut seq, "2", &x, 1).unwrap();
        let mut b = GraphBuilder::<f64>::new("x");
        let mut from = "x".to_string();
        for (name, layer) in ["c1", "r1", "p1", "c2", "r2", "flat", "fc"]
            .iter()
            .zip(small_layers(3))
        {
            b = b.boxed_layer(name, &from, layer);
            from = name.to_string();
        }
        let mut graph = b.output("fc").build(&[1, 2, 6, 6]).unwrap();
        let got = grad_cam(&mut graph, "p1", &x, 1).unwrap();
        assert_eq!(got, want);

        // Node `a` feeds both `b = 3a` and the sum a + b: dL/da = (1 + 3) dL/d(sum).
        let one_by_one = |w: f64| {
            Conv2d::from_weights(
                Conv2dConfig::new(1, 1, 1).bias(false),
                Tensor::from_elem(IxDyn(&[1, 1, 1, 1]), w),
                None,
            )
            .unwrap()
        };
        let fc: Vec<f64> = (0..9).map(|i| i as f64 - 4.0).collect();
        let mut g = GraphBuilder::<f64>::new("x")
            .layer("a", "x", one_by_one(1.0))
            .layer("b", "a", one_by_one(3.0))
            .merge("sum", &["a", "b"], Add::new())
            .layer("flat", "sum", Flatten::new(FlattenConfig::new()).unwrap())
            .layer(
                "fc",
                "flat",
                Linear::from_weights(
                    Tensor::from_shape_vec(IxDyn(&[1, 9]), fc.clone()).unwrap(),
                    None,
                )
                .unwrap(),
            )
            .output("fc")
            .build(&[1, 1, 3, 3])
            .unwrap();
        let x = random_tensor(&[1, 1, 3, 3], 9);
        let (_, a) = g.forward_probe(&x, "a").unwrap();
        assert_eq!(a, x);
        let seed = Tensor::from_elem(IxDyn(&[1, 1]), 1.0);
        let da = g.backward_probe(&seed, "a").unwrap();
        for (d, w) in da.iter().zip(&fc) {
            assert!((d - 4.0 * w).abs() < 1e-12);
        }
        assert!(g
            .forward_probe(&x, "nope")
            .unwrap_err()
            .to_string()
            .contains("names: x, a, b"));
    }

    #[test]
    fn the_last_spatial_layer_of_lenet_is_its_second_pool() {
        let lenet = crate::zoo::lenet5_modern::<f64>(10).unwrap();
        assert_eq!(last_spatial_layer(&lenet, &[1, 1, 28, 28]).unwrap(), "5");
        assert_eq!(
            last_spatial_layer(&small_net(1), &[1, 2, 6, 6]).unwrap(),
            "4"
        );
        let flat = Sequential::<f64>::new().add(Flatten::new(FlattenConfig::new()).unwrap());
        assert!(last_spatial_layer(&flat, &[1, 2, 6, 6]).is_err());
    }

    #[test]
    fn bad_requests_are_errors() {
        let mut net = small_net(2);
        let x = random_tensor(&[2, 6, 6], 1);
        assert!(saliency(&mut net, &x, 3)
            .unwrap_err()
            .to_string()
            .contains("class 3 does not exist"));
        assert!(saliency(&mut net, &random_tensor(&[2, 2, 6, 6], 1), 0).is_err());
        assert!(saliency(&mut net, &random_tensor(&[6, 6], 1), 0).is_err());
        let err = grad_cam(&mut net, "9", &x, 0).unwrap_err().to_string();
        assert!(err.contains("names: 0, 1, 2, 3, 4, 5, 6"), "{err}");
        // A flattened layer has no maps to weigh.
        assert!(grad_cam(&mut net, "5", &x, 0)
            .unwrap_err()
            .to_string()
            .contains("feature maps"));
        let img = Tensor::<f64>::zeros(IxDyn(&[3, 2, 2]));
        assert!(overlay(&img, &Tensor::zeros(IxDyn(&[2, 3])), 0.5).is_err());
        assert!(overlay(&img, &Tensor::zeros(IxDyn(&[2, 2])), 1.5).is_err());
        assert!(overlay(
            &Tensor::<f64>::zeros(IxDyn(&[2, 2, 2])),
            &Tensor::zeros(IxDyn(&[2, 2])),
            0.5
        )
        .is_err());
    }

    #[test]
    fn colours_and_blending() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
        assert_eq!(jet(f64::NAN), jet(0.0));
        let img = Tensor::<f64>::from_elem(IxDyn(&[1, 1, 2]), 1.0);
        let heat = Tensor::from_shape_vec(IxDyn(&[1, 2]), vec![0.0, 1.0]).unwrap();
        // alpha 0 is the image, alpha 1 the colours.
        assert_eq!(overlay(&img, &heat, 0.0).unwrap(), vec![255; 6]);
        assert_eq!(
            overlay(&img, &heat, 1.0).unwrap(),
            vec![0, 0, 128, 128, 0, 0]
        );
        let n = normalize(&Tensor::from_shape_vec(IxDyn(&[3]), vec![2.0, 4.0, 3.0]).unwrap());
        assert_eq!(n.iter().copied().collect::<Vec<f64>>(), vec![0.0, 1.0, 0.5]);
        assert!(normalize(&Tensor::<f64>::from_elem(IxDyn(&[2]), 7.0))
            .iter()
            .all(|&v| v == 0.0));
    }
}
