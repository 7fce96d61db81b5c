//! The [`Layer`] trait: a hand-written forward and backward pass plus named parameters.
//!
//! Data flow for one training step through a chain of layers:
//!
//! ```text
//! forward:   x0 --L1--> x1 --L2--> x2 ... --> logits      (each layer caches what backward needs)
//! backward:  dx0 <--L1-- dx1 <--L2-- dx2 ... <-- dlogits  (each layer *adds* into its param grads)
//! ```
//!
//! Parameters and buffers are reached through a visitor that hands out PyTorch `state_dict`
//! names (`weight`, `bias`, `running_mean`, `running_var`, `num_batches_tracked`); containers
//! prefix their children's names (`0.weight`, `layer1.0.conv1.weight`). Optimizers, weight files
//! and summaries all walk that one visitor.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::collective::Collective;
use crate::error::{Error, Result};
use crate::kernels::elementwise;
use crate::rng::Rng64;
use crate::summary::{Summary, SummaryRow};
use crate::tensor::{Float, Tensor};

/// Training or evaluation behaviour (dropout, batch norm statistics).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Training: dropout is active, batch norm uses batch statistics and updates running ones.
    #[default]
    Train,
    /// Evaluation: dropout is the identity, batch norm uses its running statistics.
    Eval,
}

/// A trainable tensor together with its accumulated gradient (same shape).
#[derive(Clone, Debug)]
pub struct Param<T: Float> {
    /// The current value.
    pub value: Tensor<T>,
    /// dLoss/dvalue, accumulated by `backward` until [`Layer::zero_grad`].
    pub grad: Tensor<T>,
}

impl<T: Float> Param<T> {
    /// Wraps a value with a zero gradient of the same shape.
    pub fn new(value: Tensor<T>) -> Self {
        let grad = Tensor::zeros(value.raw_dim());
        Param { value, grad }
    }

    /// Wraps a value with a zero gradient allocated fallibly: a gradient the system cannot
    /// allocate is an [`Error::InvalidConfig`] naming `what`.
    pub fn try_new(what: &str, value: Tensor<T>) -> Result<Self> {
        let grad = crate::tensor::try_zeros(what, value.shape())?;
        Ok(Param { value, grad })
    }

    /// Number of scalars in the parameter.
    pub fn len(&self) -> usize {
        self.value.len()
    }

    /// True for a parameter with no elements.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

/// A named entry handed out by [`Layer::visit`].
#[derive(Debug)]
pub enum Slot<'a, T: Float> {
    /// A trainable parameter (`weight`, `bias`).
    Param(&'a Param<T>),
    /// A non-trainable buffer (`running_mean`, `running_var`, `num_batches_tracked`).
    Buffer(&'a Tensor<T>),
}

/// A named entry handed out by [`Layer::visit_mut`].
#[derive(Debug)]
pub enum SlotMut<'a, T: Float> {
    /// A trainable parameter (`weight`, `bias`).
    Param(&'a mut Param<T>),
    /// A non-trainable buffer (`running_mean`, `running_var`, `num_batches_tracked`).
    Buffer(&'a mut Tensor<T>),
}

/// A per-channel operation that, in inference, can run inside the previous layer's output loop.
///
/// [`Layer::epilogue`] describes a layer this way (BatchNorm2d in evaluation, ReLU) so that a
/// container can hand it to the layer before it ([`Layer::infer_fused`]): a convolution then
/// writes `relu(scale·(W·x + b) + shift)` in one pass over its output instead of three.
#[derive(Clone, Debug, PartialEq)]
pub enum Epilogue<T: Float> {
    /// `y[n, c, ..] = scale[c] · x[n, c, ..] + shift[c]` (BatchNorm2d in eval, folded)
    Affine {
        /// Per-channel factor.
        scale: Vec<T>,
        /// Per-channel offset.
        shift: Vec<T>,
    },
    /// `y = max(x, 0)` (NaN stays NaN, as PyTorch)
    Relu,
}

impl<T: Float> Epilogue<T> {
    /// Whether the epilogue can follow an output with `channels` channels (an affine map needs
    /// one scale and one shift per channel; ReLU fits anything).
    pub fn fits(&self, channels: usize) -> bool {
        match self {
            Epilogue::Affine { scale, shift } => scale.len() == channels && shift.len() == channels,
            Epilogue::Relu => true,
        }
    }

    /// Applies the epilogue in place to `y`, laid out `[.., C, inner]` (each run of `inner`
    /// values belongs to one channel, channels cycling). Fails, changing nothing, when `y` is
    /// not a whole number of `[C, inner]` blocks.
    pub fn apply(&self, y: &mut [T], inner: usize) -> Result<()> {
        match self {
            Epilogue::Affine { scale, shift } => {
                let c = scale.len();
                if inner == 0 || c == 0 || c != shift.len() || y.len() % (c * inner) != 0 {
                    return Err(Error::input(
                        "Epilogue::Affine",
                        format!(
                            "{} values are not whole [{c}, {inner}] blocks ({} scales, {} shifts)",
                            y.len(),
                            c,
                            shift.len()
                        ),
                    ));
                }
                elementwise::affine_channels(y, scale, shift, inner);
            }
            Epilogue::Relu => elementwise::map_inplace(y, elementwise::relu),
        }
        Ok(())
    }
}

/// A network layer with a hand-written forward and backward pass.
///
/// * `forward` computes the output and keeps whatever `backward` needs.
/// * `backward` takes dLoss/doutput and returns dLoss/dinput, **adding** the parameter gradients
///   into [`Param::grad`] (so gradients accumulate over several backward calls until
///   [`Layer::zero_grad`]).
///
/// * `infer` computes the same output as `forward` in evaluation mode from `&self`, keeping
///   nothing, so one model (behind an `Arc` or a `&`) can serve many threads at once.
///
/// Every method that can see bad input returns a [`Result`]; none panics on it.
pub trait Layer<T: Float>: Send + Sync {
    /// The kind of layer, as PyTorch names the module (`"Conv2d"`, `"ReLU"`).
    fn kind(&self) -> &'static str;

    /// A one-line description for summaries, e.g. `96 11x11 filters at stride 4, pad 0`.
    fn describe(&self) -> String {
        String::new()
    }

    /// The output shape for an input of shape `input`, or why that input is impossible.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>>;

    /// Computes the output, caching what `backward` needs.
    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>>;

    /// [`Layer::forward`] taking the input by value, with the same results. A layer that keeps
    /// its input for `backward` (Conv2d) or can work in place (ReLU) then needs no copy;
    /// containers hand each intermediate output on this way. Default: `forward(&input)`.
    fn forward_owned(&mut self, input: Tensor<T>) -> Result<Tensor<T>> {
        self.forward(&input)
    }

    /// Evaluation-mode forward that takes `&self`, caches nothing, allocates only its output
    /// (and reusable workspaces). Same numbers as `forward` after `set_mode(Mode::Eval)`,
    /// whatever the current mode.
    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>>;

    /// If this layer in inference is a per-channel affine map (BatchNorm2d) or a ReLU,
    /// describes it so the layer before it can apply it inside its own output loop.
    /// Default `None`.
    fn epilogue(&self) -> Option<Epilogue<T>> {
        None
    }

    /// Inference followed by `epilogues` applied in order to the output, or `Ok(None)` when
    /// the layer cannot fuse them (the caller then runs the layers one by one).
    /// Default `Ok(None)`.
    fn infer_fused(
        &self,
        _input: &Tensor<T>,
        _epilogues: &[Epilogue<T>],
    ) -> Result<Option<Tensor<T>>> {
        Ok(None)
    }

    /// Given dLoss/doutput of the last `forward`, returns dLoss/dinput and accumulates the
    /// parameter gradients.
    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>>;

    /// [`Layer::backward`] taking the gradient by value, with the same results: a layer whose
    /// input gradient is its output gradient masked or scaled (ReLU) writes it in place.
    /// Default: `backward(&grad_output)`.
    fn backward_owned(&mut self, grad_output: Tensor<T>) -> Result<Tensor<T>> {
        self.backward(&grad_output)
    }

    /// [`Layer::backward`] for a caller that has no use for dLoss/dinput (the input is data, as
    /// for the first layer of a model): accumulates the same parameter gradients, and may skip
    /// the input gradient. A convolution then drops its `Wᵀ·dY` product and col2im, a third
    /// of its backward; containers pass the call on to their first layer.
    /// Default: `backward`, its result dropped.
    fn backward_params(&mut self, grad_output: &Tensor<T>) -> Result<()> {
        self.backward(grad_output).map(drop)
    }

    /// Switches between training and evaluation behaviour. Layers without a difference ignore it.
    fn set_mode(&mut self, _mode: Mode) {}

    /// Calls `f` with the `state_dict` name of every parameter and buffer.
    fn visit(&self, _f: &mut dyn FnMut(&str, Slot<'_, T>)) {}

    /// Calls `f` with the `state_dict` name of every parameter and buffer, mutably.
    fn visit_mut(&mut self, _f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {}

    /// Calls `f` with every random generator the layer draws from during training (dropout),
    /// named like its parameters, so a checkpoint can save and restore them.
    fn visit_rngs_mut(&mut self, _f: &mut dyn FnMut(&str, &mut Rng64)) {}

    /// The process group a data-parallel wrapper trains this model with, if any (default
    /// `None`: one process). The trainer uses it to shard data, reduce metrics and keep
    /// printing and checkpoints to process 0.
    fn collective(&self) -> Option<std::sync::Arc<dyn Collective>> {
        None
    }

    /// Sets every parameter gradient to zero.
    fn zero_grad(&mut self) {
        self.visit_mut(&mut |_, slot| {
            if let SlotMut::Param(p) = slot {
                p.grad.fill(T::zero());
            }
        });
    }

    /// Appends this layer's rows to a model summary for an input of shape `input` and returns
    /// its output shape. Containers override it to list their children instead of themselves.
    fn summary_rows(&self, input: &[usize], rows: &mut Vec<SummaryRow>) -> Result<Vec<usize>> {
        let output = self.output_shape(input)?;
        rows.push(SummaryRow {
            kind: self.kind(),
            description: self.describe(),
            output_shape: output.clone(),
            params: self.num_params(),
        });
        Ok(output)
    }

    /// A table of every layer's output shape and parameter count for an input of shape
    /// `input`, printed like the course's AlexNet listing (`[55x55x96] CONV1: 96 11x11 filters
    /// at stride 4, pad 0`) and ending with `Total params: N`.
    fn summary(&self, input: &[usize]) -> Result<Summary> {
        let mut rows = Vec::new();
        self.summary_rows(input, &mut rows)?;
        Ok(Summary::new(input.to_vec(), rows))
    }

    /// The number of trainable scalars.
    fn num_params(&self) -> usize {
        let mut n = 0;
        self.visit(&mut |_, slot| {
            if let Slot::Param(p) = slot {
                n += p.len();
            }
        });
        n
    }

    /// The layers this one holds, each under the name that prefixes its parameters (`"0"`,
    /// `"layer4"`, `"conv1"`, `"branch2"`), in the order they run. Leaf layers hold none.
    /// Tools that reach inside a model by a dotted path (`layer4.1.conv2`, as Grad-CAM in
    /// [`crate::explain`]) walk these.
    fn children(&self) -> Vec<(&str, &dyn Layer<T>)> {
        Vec::new()
    }

    /// The slot holding the child called `name` (one of [`Layer::children`]), so that a tool
    /// can wrap the child for a while and put it back; `None` if there is no such child.
    fn child_mut(&mut self, _name: &str) -> Option<&mut Box<dyn Layer<T>>> {
        None
    }
}

/// A boxed layer is a layer, so models can be held as `Box<dyn Layer<T>>`.
impl<T: Float, L: Layer<T> + ?Sized> Layer<T> for Box<L> {
    fn kind(&self) -> &'static str {
        (**self).kind()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        (**self).output_shape(input)
    }
    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        (**self).forward(input)
    }
    fn forward_owned(&mut self, input: Tensor<T>) -> Result<Tensor<T>> {
        (**self).forward_owned(input)
    }
    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        (**self).infer(input)
    }
    fn epilogue(&self) -> Option<Epilogue<T>> {
        (**self).epilogue()
    }
    fn infer_fused(
        &self,
        input: &Tensor<T>,
        epilogues: &[Epilogue<T>],
    ) -> Result<Option<Tensor<T>>> {
        (**self).infer_fused(input, epilogues)
    }
    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        (**self).backward(grad_output)
    }
    fn backward_owned(&mut self, grad_output: Tensor<T>) -> Result<Tensor<T>> {
        (**self).backward_owned(grad_output)
    }
    fn backward_params(&mut self, grad_output: &Tensor<T>) -> Result<()> {
        (**self).backward_params(grad_output)
    }
    fn set_mode(&mut self, mode: Mode) {
        (**self).set_mode(mode)
    }
    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        (**self).visit(f)
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {
        (**self).visit_mut(f)
    }
    fn visit_rngs_mut(&mut self, f: &mut dyn FnMut(&str, &mut Rng64)) {
        (**self).visit_rngs_mut(f)
    }
    fn collective(&self) -> Option<std::sync::Arc<dyn Collective>> {
        (**self).collective()
    }
    fn zero_grad(&mut self) {
        (**self).zero_grad()
    }
    fn summary_rows(&self, input: &[usize], rows: &mut Vec<SummaryRow>) -> Result<Vec<usize>> {
        (**self).summary_rows(input, rows)
    }
    fn num_params(&self) -> usize {
        (**self).num_params()
    }
    fn children(&self) -> Vec<(&str, &dyn Layer<T>)> {
        (**self).children()
    }
    fn child_mut(&mut self, name: &str) -> Option<&mut Box<dyn Layer<T>>> {
        (**self).child_mut(name)
    }
}

/// An operation that merges several tensors into one: channel [`Concat`](crate::layers::Concat)
/// and residual [`Add`](crate::layers::Add). Used by composite blocks and graph models.
pub trait Merge<T: Float>: Send + Sync {
    /// The kind of merge (`"Concat"`, `"Add"`).
    fn kind(&self) -> &'static str;

    /// The output shape for the given input shapes.
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>>;

    /// Merges the inputs, remembering what backward needs (their shapes).
    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Result<Tensor<T>>;

    /// Merges the inputs without remembering anything (same numbers as `forward`).
    fn infer(&self, inputs: &[&Tensor<T>]) -> Result<Tensor<T>>;

    /// Splits dLoss/doutput into one gradient per input, in input order.
    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Vec<Tensor<T>>>;

    /// [`Merge::backward`] taking the gradient by value, with the same results (an `Add` hands
    /// it on instead of copying it once more). Default: `backward(&grad_output)`.
    fn backward_owned(&mut self, grad_output: Tensor<T>) -> Result<Vec<Tensor<T>>> {
        self.backward(&grad_output)
    }
}
