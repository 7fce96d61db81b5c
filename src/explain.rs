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
//! Grad-CAM needs the activations and the gradient *inside* the model, at a layer named by
//! its dotted path — the names that prefix its parameters: `"5"` in LeNet-5, `"layer4"` or
//! `"layer4.1.conv2"` in a ResNet, `"features.28"` in a VGG, `"inception5b"` in a GoogLeNet
//! (a [`Graph`](crate::model::Graph) node). The layer at that path is wrapped for one forward
//! and backward pass by a tap that keeps the value it sends forward and the gradient it
//! receives back, then put back as it was; this works in every container that lists its
//! children ([`Layer::children`]: `Sequential`, `Graph`, `Residual`, `Inception`).
//! [`default_layer`] picks the usual layer: the last feature map before the classifier.
//!
//! ```
//! use convnet::explain::{default_layer, grad_cam, saliency};
//! use convnet::prelude::*;
//! # fn main() -> convnet::Result<()> {
//! let mut net = convnet::zoo::lenet5_modern::<f64>(10)?;
//! let image = Tensor::<f64>::from_elem(ndarray::IxDyn(&[1, 28, 28]), 0.5);
//!
//! let s = saliency(&mut net, &image, 7)?; // how much each pixel moves the score of "7"
//! assert_eq!(s.shape(), &[28, 28]);
//!
//! // Grad-CAM at child "5", the second max pool: 16 maps of 5x5, one weight per map.
//! assert_eq!(default_layer(&mut net, &image)?, "5");
//! let cam = grad_cam(&mut net, "5", &image, 7)?;
//! assert_eq!(cam.weights.len(), 16);
//! assert_eq!(cam.coarse.shape(), &[5, 5]);
//! assert_eq!(cam.heat.shape(), &[28, 28]);
//! // A name that is not there, or a class the model does not score, is an error.
//! assert!(grad_cam(&mut net, "layer4", &image, 7).is_err());
//! assert!(saliency(&mut net, &image, 10).is_err());
//! # Ok(())
//! # }
//! ```
//!
//! Every function here runs the model in [`Mode::Eval`] (and leaves it there), and sets the
//! parameter gradients back to zero when done: explaining a prediction never changes it.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::error::{Error, Result};
use crate::layer::{Epilogue, Layer, Mode, Slot, SlotMut};
use crate::model::SummaryRow;
use crate::rng::Rng64;
use crate::tensor::{Float, Tensor};
use ndarray::{Axis, IxDyn};
use std::sync::{Arc, Mutex, MutexGuard};

// ---------------------------------------------------------------------------------------------
// Reaching inside a model by name

/// Every layer inside `model` as `(dotted path, kind)`, parents before their children, in the
/// order they run: `[("conv1", "Conv2d"), ..., ("layer4", "Sequential"), ("layer4.0",
/// "Residual"), ("layer4.0.conv1", "Conv2d"), ...]`. These are the names [`grad_cam`] takes.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// let net = convnet::zoo::resnet18::<f32>(10)?;
/// let paths = convnet::explain::layer_paths(&net);
/// assert!(paths.contains(&("layer4".to_string(), "Sequential")));
/// assert!(paths.contains(&("layer4.1.conv2".to_string(), "Conv2d")));
/// assert!(paths.contains(&("layer2.0.downsample.0".to_string(), "Conv2d")));
/// # Ok(())
/// # }
/// ```
pub fn layer_paths<T: Float>(model: &dyn Layer<T>) -> Vec<(String, &'static str)> {
    fn walk<T: Float>(layer: &dyn Layer<T>, prefix: &str, out: &mut Vec<(String, &'static str)>) {
        for (name, child) in layer.children() {
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            };
            out.push((path.clone(), child.kind()));
            walk(child, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(model, "", &mut out);
    out
}

/// The names of a layer's children, for error messages.
fn child_names<T: Float>(layer: &dyn Layer<T>) -> Vec<String> {
    layer
        .children()
        .into_iter()
        .map(|(n, _)| n.to_string())
        .collect()
}

fn unknown_layer(path: &str, parent: &str, part: &str, names: &[String]) -> Error {
    let inside = if parent.is_empty() {
        "the model".to_string()
    } else {
        format!("`{parent}`")
    };
    let there = if names.is_empty() {
        format!("{inside} holds no layers")
    } else {
        format!("{inside} holds {}", names.join(", "))
    };
    let message = if path == part {
        format!("no layer named `{path}` ({there})")
    } else {
        format!("no layer named `{path}`: no `{part}` there ({there})")
    };
    Error::input("explain", message)
}

/// The slot holding the layer at a dotted path.
fn slot_at<'a, T: Float>(
    model: &'a mut dyn Layer<T>,
    path: &str,
) -> Result<&'a mut Box<dyn Layer<T>>> {
    let mut parts = path.split('.');
    let first = parts.next().unwrap_or_default();
    let names = child_names(model);
    let mut slot = model
        .child_mut(first)
        .ok_or_else(|| unknown_layer(path, "", first, &names))?;
    let mut walked = first.to_string();
    for part in parts {
        let names = child_names(slot.as_ref());
        slot = slot
            .child_mut(part)
            .ok_or_else(|| unknown_layer(path, &walked, part, &names))?;
        walked = format!("{walked}.{part}");
    }
    Ok(slot)
}

/// What a tap saw: the wrapped layer, its last output and the last gradient it received.
struct TapState<T: Float> {
    layer: Option<Box<dyn Layer<T>>>,
    output: Option<Tensor<T>>,
    grad: Option<Tensor<T>>,
}

/// A layer wrapper that records its layer's output (forward and infer) and the gradient with
/// respect to that output (backward), otherwise passing everything through.
struct Tap<T: Float>(Arc<Mutex<TapState<T>>>);

fn lock<T: Float>(state: &Mutex<TapState<T>>) -> MutexGuard<'_, TapState<T>> {
    // A panic elsewhere cannot leave the state half-written: each field is set in one move.
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<T: Float> Tap<T> {
    fn with<R>(&self, f: impl FnOnce(&mut TapState<T>) -> R) -> R {
        f(&mut lock(&self.0))
    }

    fn layer<R>(&self, f: impl FnOnce(&mut Box<dyn Layer<T>>) -> Result<R>) -> Result<R> {
        self.with(|s| match &mut s.layer {
            Some(l) => f(l),
            None => Err(Error::input("explain", "the tapped layer was taken out")),
        })
    }
}

impl<T: Float> Layer<T> for Tap<T> {
    fn kind(&self) -> &'static str {
        self.with(|s| s.layer.as_ref().map_or("Tap", |l| l.kind()))
    }
    fn describe(&self) -> String {
        self.with(|s| s.layer.as_ref().map(|l| l.describe()).unwrap_or_default())
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.layer(|l| l.output_shape(input))
    }
    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let y = self.layer(|l| l.forward(input))?;
        self.with(|s| s.output = Some(y.clone()));
        Ok(y)
    }
    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let y = self.layer(|l| l.infer(input))?;
        self.with(|s| s.output = Some(y.clone()));
        Ok(y)
    }
    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        self.with(|s| s.grad = Some(grad_output.clone()));
        self.layer(|l| l.backward(grad_output))
    }
    fn set_mode(&mut self, mode: Mode) {
        let _ = self.layer(|l| {
            l.set_mode(mode);
            Ok(())
        });
    }
    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        let _ = self.layer(|l| {
            l.visit(f);
            Ok(())
        });
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {
        let _ = self.layer(|l| {
            l.visit_mut(f);
            Ok(())
        });
    }
    fn visit_rngs_mut(&mut self, f: &mut dyn FnMut(&str, &mut Rng64)) {
        let _ = self.layer(|l| {
            l.visit_rngs_mut(f);
            Ok(())
        });
    }
    fn epilogue(&self) -> Option<Epilogue<T>> {
        None // never folded into the layer before it: the tap must see its own output
    }
    fn summary_rows(&self, input: &[usize], rows: &mut Vec<SummaryRow>) -> Result<Vec<usize>> {
        self.layer(|l| l.summary_rows(input, rows))
    }
}

/// Wraps the layer at `path` in a tap; [`untap`] puts it back.
fn tap<T: Float>(model: &mut dyn Layer<T>, path: &str) -> Result<Arc<Mutex<TapState<T>>>> {
    let slot = slot_at(model, path)?;
    let state = Arc::new(Mutex::new(TapState {
        layer: None,
        output: None,
        grad: None,
    }));
    let layer = std::mem::replace(slot, Box::new(Tap(Arc::clone(&state))));
    lock(&state).layer = Some(layer);
    Ok(state)
}

/// What a tap saw: the layer's output and the gradient with respect to it, if they came.
type Seen<T> = (Option<Tensor<T>>, Option<Tensor<T>>);

/// Puts the tapped layer back in its slot and returns what the tap saw.
fn untap<T: Float>(
    model: &mut dyn Layer<T>,
    path: &str,
    state: &Mutex<TapState<T>>,
) -> Result<Seen<T>> {
    let slot = slot_at(model, path)?;
    let mut s = lock(state);
    if let Some(layer) = s.layer.take() {
        *slot = layer;
    }
    Ok((s.output.take(), s.grad.take()))
}

/// The layer Grad-CAM usually looks at, as common practice picks it: among the model's
/// top-level children ([`Layer::children`]), the last whose output for `image` is a stack
/// of feature maps `[1, K, h, w]` larger than 1x1, not counting an `AdaptiveAvgPool2d` (the
/// pooling in front of a classifier). That is `layer4` in a ResNet, `inception5b` in a
/// GoogLeNet, `features` (its last max pool) in a VGG or AlexNet, `"5"` (the second max pool)
/// in LeNet-5. Runs the model once in inference.
///
/// An [`Error::InvalidInput`] if the model has no children or none gives such maps.
pub fn default_layer<T: Float>(model: &mut dyn Layer<T>, image: &Tensor<T>) -> Result<String> {
    let what = "explain::default_layer";
    let x = batch_of_one(what, image)?;
    model.set_mode(Mode::Eval);
    let mut names: Vec<String> = Vec::new();
    for name in child_names(model) {
        if !names.contains(&name) {
            names.push(name); // a shared stateless name (`relu`) is one slot
        }
    }
    if names.is_empty() {
        return Err(Error::input(
            what,
            format!("a {} holds no layers to choose from", model.kind()),
        ));
    }
    let mut taps = Vec::with_capacity(names.len());
    for name in &names {
        match tap(model, name) {
            Ok(state) => taps.push((name.clone(), state)),
            Err(e) => {
                for (n, state) in &taps {
                    untap(model, n, state)?;
                }
                return Err(e);
            }
        }
    }
    let ran = model.infer(&x);
    let mut found = None;
    for (name, state) in &taps {
        let kind = lock(state).layer.as_ref().map_or("", |l| l.kind());
        if let (Some(out), _) = untap(model, name, state)? {
            if let [1, _, h, w] = out.shape() {
                if h * w > 1 && kind != "AdaptiveAvgPool2d" {
                    found = Some(name.clone());
                }
            }
        }
    }
    ran?;
    found.ok_or_else(|| {
        Error::input(
            what,
            format!(
                "no layer of the model ({}) outputs feature maps larger than 1x1 for input {:?}",
                names.join(", "),
                x.shape()
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
    // A NaN gradient stays NaN (as PyTorch's `amax`), so a broken model does not look calm.
    Ok(per_channel.fold_axis(Axis(0), T::zero(), |&m, &g| {
        if m.is_nan() || g.is_nan() {
            T::nan()
        } else {
            m.max(g.abs())
        }
    }))
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
/// the layer at dotted path `at` (see [`layer_paths`]; [`default_layer`] gives the usual
/// one), which must be a stack of feature maps `[1, K, h, w]`. Works on any model whose
/// output is `[1, K]` for one image (for a [`Graph`](crate::model::Graph), its first output).
/// The model is switched to [`Mode::Eval`]; parameter gradients are zeroed afterwards, and the
/// model is left exactly as it was, error or not.
///
/// A layer the class score does not depend on (an auxiliary head's) has a zero gradient, so
/// zero weights and an all-zero map. Errors: an unknown path ([`Error::InvalidInput`] naming
/// the layers there are), a class the model does not score, an image that is not one image,
/// a layer whose output is not feature maps ([`Error::ShapeMismatch`]).
pub fn grad_cam<T: Float>(
    model: &mut dyn Layer<T>,
    at: &str,
    image: &Tensor<T>,
    class: usize,
) -> Result<GradCam<T>> {
    let what = "explain::grad_cam";
    let x = batch_of_one(what, image)?;
    model.set_mode(Mode::Eval);
    let state = tap(model, at)?;
    let ran = model.forward(&x).and_then(|output| {
        let seed = class_seed(what, &output, class)?;
        model.backward(&seed)
    });
    let (activation, grad) = untap(model, at, &state)?;
    model.zero_grad();
    ran?;
    let activation = activation.ok_or_else(|| {
        Error::input(
            what,
            format!("layer `{at}` did not run in the forward pass"),
        )
    })?;
    let grad = grad.unwrap_or_else(|| Tensor::zeros(activation.raw_dim()));
    let &[_, _, h, w] = x.shape() else {
        return Err(Error::shape("explain::grad_cam", "[1, C, H, W]", x.shape()));
    };
    grad_cam_from(&activation, &grad, [h, w])
}

/// Grad-CAM from activations `A` and gradients `d y_c / d A` already at hand (both
/// `[1, K, h, w]` or `[K, h, w]`), upsampled to `size = [H, W]`. [`grad_cam`] calls it; a
/// model whose layers cannot be reached by name can gather the two tensors itself.
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
    coarse.mapv_inplace(crate::kernels::elementwise::relu); // NaN stays NaN, as PyTorch
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
    use crate::model::{GraphBuilder, Sequential};

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

    /// A NaN in the gradients reaches the Grad-CAM map (PyTorch's `relu` keeps NaN) instead of
    /// being clamped to a calm zero.
    #[test]
    fn grad_cam_keeps_a_nan() {
        let a =
            Tensor::<f64>::from_shape_vec(IxDyn(&[1, 2, 2]), vec![1.0, -1.0, 2.0, 0.5]).unwrap();
        let mut g = a.mapv(|_| 0.25);
        g[[0, 0, 1]] = f64::NAN;
        let cam = grad_cam_from(&a, &g, [2, 2]).unwrap();
        assert!(cam.coarse.iter().all(|v| v.is_nan()));
        let fine = grad_cam_from(&a, &a.mapv(|_| 0.25), [2, 2]).unwrap();
        assert!(fine.coarse.iter().all(|v| v.is_finite() && *v >= 0.0));
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
    fn graph_nodes_agree_with_sequential_and_sum_fan_out() {
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
        // Grad-CAM runs on a Graph node; the tap sees A = x and dA = 4 fc.
        let cam = grad_cam(&mut g, "a", &x, 0).unwrap();
        assert_eq!(cam.coarse.shape(), &[3, 3]);
        let state = tap(&mut g, "a").unwrap();
        let y = g.forward(&x).unwrap();
        g.backward(&Tensor::ones(y.raw_dim())).unwrap();
        let (a, da) = untap(&mut g, "a", &state).unwrap();
        assert_eq!(a.unwrap(), x);
        for (d, w) in da.unwrap().iter().zip(&fc) {
            assert!((d - 4.0 * w).abs() < 1e-12);
        }
        assert_eq!(g.child_mut("a").map(|l| l.kind()), Some("Conv2d")); // put back
        let err = grad_cam(&mut g, "nope", &x, 0).unwrap_err().to_string();
        assert!(err.contains("the model holds a, b, flat, fc"), "{err}");
        // `sum` is a merge node, not a layer: it cannot be tapped.
        assert!(grad_cam(&mut g, "sum", &x, 0).is_err());
    }

    /// Nested paths reach inside a ResNet block: `block.bn2` is the block body's second batch
    /// norm, `block.downsample.1` its shortcut's.
    #[test]
    fn nested_paths_reach_inside_blocks() {
        let block = crate::zoo::basic_block::<f64>(3, 4, 2, true).unwrap();
        let mut net = Sequential::new()
            .add_named(
                "stem",
                Conv2d::new(Conv2dConfig::new(2, 3, 3).padding(1).seed(7)).unwrap(),
            )
            .unwrap()
            .add_named("block", block)
            .unwrap()
            .add_named("flat", Flatten::new(FlattenConfig::new()).unwrap())
            .unwrap()
            .add_named(
                "fc",
                Linear::new(crate::layers::LinearConfig::new(4 * 3 * 3, 3).seed(8)).unwrap(),
            )
            .unwrap();
        let paths: Vec<String> = layer_paths(&net).into_iter().map(|(p, _)| p).collect();
        for p in [
            "block.conv2",
            "block.downsample.1",
            "block.post",
            "block.relu",
        ] {
            assert!(paths.contains(&p.to_string()), "{p} in {paths:?}");
        }
        let x = random_tensor(&[2, 6, 6], 3);
        let batch = x.clone().insert_axis(Axis(0));
        let before = net.infer(&batch).unwrap();
        let cam = grad_cam(&mut net, "block.bn2", &x, 2).unwrap();
        assert_eq!(cam.weights.len(), 4);
        assert_eq!(cam.coarse.shape(), &[3, 3]);
        assert_eq!(cam.heat.shape(), &[6, 6]);
        // α_k by finite differences: adding δ to bn2's bias k adds δ to every cell of its
        // output map A_k, so d score / d bias_k = Σ_ij d score / d A[k, i, j] = hw · α_k.
        let eps = 1e-6;
        let mut score_with_bias = |k: usize, delta: f64| {
            let slot = net.child_mut("block").unwrap().child_mut("bn2").unwrap();
            slot.visit_mut(&mut |name, s| {
                if let (SlotMut::Param(p), "bias") = (s, name) {
                    p.value[[k]] += delta;
                }
            });
            net.infer(&batch).unwrap()[[0, 2]]
        };
        for k in 0..4 {
            let up = score_with_bias(k, eps);
            let down = score_with_bias(k, -2.0 * eps);
            score_with_bias(k, eps);
            let alpha = (up - down) / (2.0 * eps) / 9.0;
            assert!(
                (cam.weights[k] - alpha).abs() < 1e-6,
                "channel {k}: {} vs {alpha}",
                cam.weights[k]
            );
        }
        assert!(cam.weights.iter().any(|w| w.abs() > 1e-4));
        // The model is unchanged: same output, same paths.
        assert_eq!(net.infer(&batch).unwrap(), before);
        let again: Vec<String> = layer_paths(&net).into_iter().map(|(p, _)| p).collect();
        assert_eq!(again, paths);
        let err = grad_cam(&mut net, "block.conv9", &x, 0)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "no `conv9` there (`block` holds conv1, bn1, relu, conv2, bn2, downsample, post)"
            ),
            "{err}"
        );
        assert!(grad_cam(&mut net, "block.conv2.x", &x, 0)
            .unwrap_err()
            .to_string()
            .contains("`block.conv2` holds no layers"));
        assert!(grad_cam(&mut net, "", &x, 0).is_err());
        assert_eq!(default_layer(&mut net, &x).unwrap(), "block");
        // A Sequential child is also found by its index: `1` is `block`, `1.bn2` its bn2.
        assert_eq!(net.child_mut("1").map(|l| l.kind()), Some("Residual"));
        let by_index = grad_cam(&mut net, "1.bn2", &x, 2).unwrap();
        assert_eq!(by_index, cam);
    }

    #[test]
    fn the_default_layer_is_the_last_feature_map_before_the_classifier() {
        let mut lenet = crate::zoo::lenet5_modern::<f64>(10).unwrap();
        let digit = Tensor::zeros(IxDyn(&[1, 28, 28]));
        assert_eq!(default_layer(&mut lenet, &digit).unwrap(), "5");
        let x = random_tensor(&[2, 6, 6], 1);
        assert_eq!(default_layer(&mut small_net(1), &x).unwrap(), "4");
        // ResNet-18 at 64x64: layer4 is 2x2, the adaptive pool after it 1x1.
        let mut resnet = crate::zoo::resnet18::<f32>(10).unwrap();
        let photo = Tensor::zeros(IxDyn(&[3, 64, 64]));
        assert_eq!(default_layer(&mut resnet, &photo).unwrap(), "layer4");
        // VGG's adaptive pool keeps 7x7 maps but is skipped: its features are the answer.
        let mut vgg = crate::zoo::vgg11::<f32>(10).unwrap();
        assert_eq!(default_layer(&mut vgg, &photo).unwrap(), "features");
        let mut flat = Sequential::<f64>::new().add(Flatten::new(FlattenConfig::new()).unwrap());
        assert!(default_layer(&mut flat, &x).is_err());
        assert!(default_layer(&mut Sequential::<f64>::new(), &x).is_err());
        assert!(default_layer(&mut ReLU::new(), &x).is_err());
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
        assert!(err.contains("the model holds 0, 1, 2, 3, 4, 5, 6"), "{err}");
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
