//! [`Replicated`]: data parallelism over threads inside one process, one replica of a model per
//! thread.
//!
//! A small network (LeNet-5 on MNIST) does too little work per layer for the layers' own
//! parallel loops to pay: the threads would meet several times per layer over shares of tens
//! of microseconds. Here each thread instead runs a whole replica, serially, on its share of
//! the batch, and the threads meet once per forward and once per backward:
//!
//! ```text
//! forward:   x[0..n]  = x[0..n₀] ++ x[n₀..n₀+n₁] ++ ...     replica r: y_r = f(x_r; θ)
//!            y        = y_0 ++ y_1 ++ ...
//! backward:  dL/dθ   += Σ_r dL/dθ |_r   (summed into replica 0 in the order r = 1, 2, ...)
//!            dL/dx    = dx_0 ++ dx_1 ++ ...
//! ```
//!
//! For a loss that is a mean over the whole batch, `dL/dy` already carries the `1/n`, so the
//! plain sum of the replicas' gradients is the gradient of the whole batch. Layers whose
//! forward depends on the other samples of the batch (BatchNorm2d in training) see only
//! their replica's share, as under PyTorch's `DistributedDataParallel`.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::collective::Collective;
use crate::error::{Error, Result};
use crate::layer::{Epilogue, Layer, Mode, Slot, SlotMut};
use crate::model::SummaryRow;
use crate::rng::Rng64;
use crate::tensor::{Float, Tensor};
use ndarray::{Axis, Slice};
use std::marker::PhantomData;
use std::sync::Arc;

/// A model replicated over threads: `forward` and `backward` cut the batch into one share per
/// replica and run the replicas at once, each on its own single thread.
///
/// * The wrapper is a [`Layer`] that shows only replica 0: `visit`, `visit_mut`, `state_dict`
///   names, summaries, optimizers and checkpoints see one model, with the wrapped model's
///   own names.
/// * Before every `forward`, the other replicas take replica 0's parameters and buffers (so
///   an optimizer step on the wrapper reaches them all) and, in training mode, random
///   generators forked from replica 0's (dropout masks differ between replicas, and a
///   checkpoint of replica 0 replays them).
/// * `backward` adds the other replicas' parameter gradients into replica 0's, in replica
///   order: results depend on the number of replicas, never on thread timing. Gradients
///   accumulate over several `backward` calls until [`Layer::zero_grad`], as for any layer.
/// * `infer` runs replica 0 on the whole batch with the crate's thread pool.
///
/// It pays for small models, whose steps are too short to split each layer over threads
/// (LeNet-5: see docs/PERFORMANCE.md); large models are better served by their layers' own
/// parallel kernels, and each extra replica costs a copy of the weights, gradients and
/// activations of its share.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// use convnet::model::Replicated;
/// let mut net = Replicated::new(2, || convnet::zoo::lenet5_modern::<f32>(10))?;
/// let x = Tensor::<f32>::zeros(ndarray::IxDyn(&[5, 1, 28, 28]));
/// let y = net.forward(&x)?; // replica 0 takes 3 images, replica 1 takes 2
/// assert_eq!(y.shape(), &[5, 10]);
/// let dx = net.backward(&Tensor::<f32>::ones(ndarray::IxDyn(&[5, 10])))?;
/// assert_eq!(dx.shape(), &[5, 1, 28, 28]);
/// assert_eq!(net.num_params(), 61_706); // one model's parameters
/// # Ok(())
/// # }
/// ```
pub struct Replicated<T: Float, L: Layer<T>> {
    /// Replica 0, the one the wrapper shows.
    primary: L,
    /// Replicas 1, 2, ...
    others: Vec<L>,
    /// One single-thread pool per replica, so a replica's loops and products run serially.
    #[cfg(feature = "rayon")]
    pools: Vec<rayon::ThreadPool>,
    mode: Mode,
    /// Batch sizes given to each replica by the last `forward` (zero: replica skipped), and
    /// the input's shape.
    last: Option<(Vec<usize>, Vec<usize>)>,
    _t: PhantomData<T>,
}

impl<T: Float, L: Layer<T>> Replicated<T, L> {
    /// Builds `replicas` copies of a model with `build` and gives them all the parameters and
    /// buffers of the first. Fails with [`Error::InvalidConfig`] for zero replicas, when the
    /// copies do not have the same parameter names and sizes, or when a thread cannot be
    /// started; passes on the errors of `build`.
    pub fn new(replicas: usize, mut build: impl FnMut() -> Result<L>) -> Result<Self> {
        Self::from_model(build()?, replicas, build)
    }

    /// Like [`Replicated::new`], with a model already built (trained, or loaded from a file)
    /// as replica 0: `build` makes the other `replicas - 1`, which then take its parameters
    /// and buffers.
    pub fn from_model(
        primary: L,
        replicas: usize,
        mut build: impl FnMut() -> Result<L>,
    ) -> Result<Self> {
        if replicas == 0 {
            return Err(Error::config("Replicated", "needs at least 1 replica"));
        }
        let others = (1..replicas).map(|_| build()).collect::<Result<Vec<L>>>()?;
        let layout = |m: &L| {
            let mut v = Vec::new();
            m.visit(&mut |name, slot| {
                let len = match slot {
                    Slot::Param(p) => p.len(),
                    Slot::Buffer(b) => b.len(),
                };
                v.push((name.to_string(), len));
            });
            v
        };
        let expected = layout(&primary);
        if let Some(r) = others.iter().position(|m| layout(m) != expected) {
            return Err(Error::config(
                "Replicated",
                format!(
                    "replica {} has other parameters or buffers (names or sizes) than \
                     replica 0: `build` must make the same model every time",
                    r + 1
                ),
            ));
        }
        #[cfg(feature = "rayon")]
        let pools = (0..replicas)
            .map(|r| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("convnet-replica-{r}"))
                    .build()
                    .map_err(|e| {
                        Error::config("Replicated", format!("thread for replica {r}: {e}"))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut model = Replicated {
            primary,
            others,
            #[cfg(feature = "rayon")]
            pools,
            mode: Mode::Train,
            last: None,
            _t: PhantomData,
        };
        model.broadcast_state();
        Ok(model)
    }

    /// One replica per thread of the crate's pool ([`crate::num_threads`]).
    pub fn per_thread(build: impl FnMut() -> Result<L>) -> Result<Self> {
        Self::new(crate::num_threads(), build)
    }

    /// The number of replicas.
    pub fn replicas(&self) -> usize {
        1 + self.others.len()
    }

    /// Replica 0, the one whose parameters the wrapper shows.
    pub fn inner(&self) -> &L {
        &self.primary
    }

    /// Replica 0, unwrapped.
    pub fn into_inner(self) -> L {
        self.primary
    }

    /// Copies replica 0's parameter values and buffers into every other replica.
    fn broadcast_state(&mut self) {
        if self.others.is_empty() {
            return;
        }
        let mut flat: Vec<T> = Vec::new();
        self.primary.visit(&mut |_, slot| match slot {
            Slot::Param(p) => append(&mut flat, &p.value),
            Slot::Buffer(b) => append(&mut flat, b),
        });
        for replica in &mut self.others {
            let mut rest = flat.as_slice();
            replica.visit_mut(&mut |_, slot| match slot {
                SlotMut::Param(p) => rest = overwrite(&mut p.value, rest),
                SlotMut::Buffer(b) => rest = overwrite(b, rest),
            });
        }
    }

    /// Gives every other replica generators forked from replica 0's, in `visit_rngs_mut`
    /// order.
    fn fork_rngs(&mut self) {
        let (first, rest) = (&mut self.primary, &mut self.others);
        for replica in rest {
            let mut forks: Vec<Rng64> = Vec::new();
            first.visit_rngs_mut(&mut |_, rng| forks.push(rng.fork()));
            let mut forks = forks.into_iter();
            replica.visit_rngs_mut(&mut |_, rng| {
                if let Some(f) = forks.next() {
                    *rng = f;
                }
            });
        }
    }

    /// Adds every other replica's parameter gradients into replica 0's (replica order) and
    /// zeroes theirs.
    fn reduce_gradients(&mut self) {
        let mut flat: Vec<T> = Vec::new();
        for replica in &mut self.others {
            flat.clear();
            replica.visit(&mut |_, slot| {
                if let Slot::Param(p) = slot {
                    append(&mut flat, &p.grad);
                }
            });
            let mut rest = flat.as_slice();
            self.primary.visit_mut(&mut |_, slot| {
                if let SlotMut::Param(p) = slot {
                    rest = add_into(&mut p.grad, rest);
                }
            });
            replica.zero_grad();
        }
    }

    /// The shares and input shape of the last forward, once `grad_output` is checked to
    /// hold that batch.
    fn last_shares(&self, grad_output: &Tensor<T>) -> Result<(Vec<usize>, Vec<usize>)> {
        let (shares, input_shape) = self
            .last
            .clone()
            .ok_or_else(|| Error::no_cache(format!("Replicated({})", self.kind())))?;
        let n: usize = shares.iter().sum();
        if grad_output.shape().first() != Some(&n) {
            return Err(Error::shape(
                "Replicated",
                format!("[{n}, ...] (the batch of the last forward)"),
                grad_output.shape(),
            ));
        }
        Ok((shares, input_shape))
    }

    /// Runs `step` on every replica with a non-empty share of `input` (cut along axis 0 by
    /// `shares`), each on its own thread, and joins the results along axis 0.
    fn run_shares(
        &mut self,
        input: &Tensor<T>,
        shares: &[usize],
        step: impl Fn(&mut L, Tensor<T>) -> Result<Tensor<T>> + Sync,
    ) -> Result<Tensor<T>> {
        let mut pieces: Vec<(usize, Tensor<T>)> = Vec::with_capacity(shares.len());
        let mut start = 0;
        for (r, &n) in shares.iter().enumerate() {
            if n > 0 {
                let piece = input
                    .slice_axis(Axis(0), Slice::from(start..start + n))
                    .as_standard_layout()
                    .into_owned();
                pieces.push((r, piece));
            }
            start += n;
        }
        if pieces.is_empty() {
            // An empty batch: replica 0 gives the empty output of the right shape.
            pieces.push((0, input.clone()));
        }
        let outputs: Vec<Result<Tensor<T>>> = self.run_pieces(pieces, &step);
        let outputs = outputs.into_iter().collect::<Result<Vec<_>>>()?;
        let views: Vec<_> = outputs.iter().map(|t| t.view()).collect();
        ndarray::concatenate(Axis(0), &views)
            .map_err(|e| Error::input("Replicated", format!("replica outputs do not join: {e}")))
    }

    #[cfg(feature = "rayon")]
    fn run_pieces(
        &mut self,
        pieces: Vec<(usize, Tensor<T>)>,
        step: &(impl Fn(&mut L, Tensor<T>) -> Result<Tensor<T>> + Sync),
    ) -> Vec<Result<Tensor<T>>> {
        use rayon::prelude::*;
        let mut slots: Vec<Option<Tensor<T>>> = (0..self.replicas()).map(|_| None).collect();
        for (r, piece) in pieces {
            if let Some(slot) = slots.get_mut(r) {
                *slot = Some(piece);
            }
        }
        let busy: Vec<(&mut L, Tensor<T>, &rayon::ThreadPool)> = std::iter::once(&mut self.primary)
            .chain(self.others.iter_mut())
            .zip(slots)
            .zip(self.pools.iter())
            .filter_map(|((m, x), pool)| Some((m, x?, pool)))
            .collect();
        if busy.len() == 1 {
            // One share: no other replica to wait for, so let the layers use the whole pool.
            return busy.into_iter().map(|(m, x, _)| step(m, x)).collect();
        }
        busy.into_par_iter()
            .with_max_len(1)
            .map(|(m, x, pool)| pool.install(|| step(m, x)))
            .collect()
    }

    #[cfg(not(feature = "rayon"))]
    fn run_pieces(
        &mut self,
        pieces: Vec<(usize, Tensor<T>)>,
        step: &(impl Fn(&mut L, Tensor<T>) -> Result<Tensor<T>> + Sync),
    ) -> Vec<Result<Tensor<T>>> {
        pieces
            .into_iter()
            .filter_map(|(r, x)| {
                std::iter::once(&mut self.primary)
                    .chain(self.others.iter_mut())
                    .nth(r)
                    .map(|m| step(m, x))
            })
            .collect()
    }
}

/// Appends `t`'s elements (in memory order, which is logical order for the standard layout
/// every parameter has) to `flat`.
fn append<T: Float>(flat: &mut Vec<T>, t: &Tensor<T>) {
    match t.as_slice() {
        Some(s) => flat.extend_from_slice(s),
        None => flat.extend(t.iter().copied()),
    }
}

/// Overwrites `t` with the first `t.len()` values of `flat`; returns the rest. (`new` checked
/// that every replica has the same names and sizes, so `flat` holds enough.)
fn overwrite<'a, T: Float>(t: &mut Tensor<T>, flat: &'a [T]) -> &'a [T] {
    let (head, rest) = flat.split_at(t.len().min(flat.len()));
    match t.as_slice_mut() {
        Some(s) if s.len() == head.len() => s.copy_from_slice(head),
        _ => t.iter_mut().zip(head).for_each(|(v, &h)| *v = h),
    }
    rest
}

/// Adds the first `t.len()` values of `flat` into `t`; returns the rest.
fn add_into<'a, T: Float>(t: &mut Tensor<T>, flat: &'a [T]) -> &'a [T] {
    let (head, rest) = flat.split_at(t.len().min(flat.len()));
    match t.as_slice_mut() {
        Some(s) => s.iter_mut().zip(head).for_each(|(v, &h)| *v += h),
        None => t.iter_mut().zip(head).for_each(|(v, &h)| *v += h),
    }
    rest
}

/// `n` cut into `parts` shares as even as possible, the larger ones first.
fn shares(n: usize, parts: usize) -> Vec<usize> {
    (0..parts)
        .map(|r| n / parts + usize::from(r < n % parts))
        .collect()
}

impl<T: Float, L: Layer<T>> Layer<T> for Replicated<T, L> {
    fn kind(&self) -> &'static str {
        self.inner().kind()
    }
    fn describe(&self) -> String {
        self.inner().describe()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.inner().output_shape(input)
    }

    /// Every replica's forward on its share of the batch, at once.
    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        self.last = None;
        let Some(&n) = input.shape().first() else {
            return Err(Error::shape("Replicated", "[N, ...]", input.shape()));
        };
        self.broadcast_state();
        if self.mode == Mode::Train {
            self.fork_rngs();
        }
        let shares = shares(n, self.replicas());
        let output = self.run_shares(input, &shares, |m, x| m.forward_owned(x))?;
        self.last = Some((shares, input.shape().to_vec()));
        Ok(output)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        self.inner().infer(input)
    }
    fn epilogue(&self) -> Option<Epilogue<T>> {
        self.inner().epilogue()
    }
    fn infer_fused(
        &self,
        input: &Tensor<T>,
        epilogues: &[Epilogue<T>],
    ) -> Result<Option<Tensor<T>>> {
        self.inner().infer_fused(input, epilogues)
    }

    /// Every replica's backward on its share of `grad_output`, then the parameter gradients
    /// summed into replica 0.
    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let (shares, input_shape) = self.last_shares(grad_output)?;
        let grad_input = self.run_shares(grad_output, &shares, |m, g| m.backward_owned(g))?;
        self.reduce_gradients();
        if grad_input.shape() != input_shape.as_slice() {
            return Err(Error::shape(
                "Replicated",
                format!("{input_shape:?} (the input of the last forward)"),
                grad_input.shape(),
            ));
        }
        Ok(grad_input)
    }

    /// Every replica's [`Layer::backward_params`] on its share, then the parameter gradients
    /// summed into replica 0.
    fn backward_params(&mut self, grad_output: &Tensor<T>) -> Result<()> {
        let (shares, _) = self.last_shares(grad_output)?;
        self.run_shares(grad_output, &shares, |m, g| {
            m.backward_params(&g)?;
            Ok(Tensor::zeros(ndarray::IxDyn(&[g.len_of(Axis(0)), 0])))
        })?;
        self.reduce_gradients();
        Ok(())
    }

    fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
        self.primary.set_mode(mode);
        self.others.iter_mut().for_each(|m| m.set_mode(mode));
    }
    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        self.inner().visit(f)
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {
        self.primary.visit_mut(f)
    }
    fn visit_rngs_mut(&mut self, f: &mut dyn FnMut(&str, &mut Rng64)) {
        self.primary.visit_rngs_mut(f)
    }
    fn collective(&self) -> Option<Arc<dyn Collective>> {
        self.inner().collective()
    }
    fn zero_grad(&mut self) {
        self.primary.zero_grad();
        self.others.iter_mut().for_each(|m| m.zero_grad());
    }
    fn summary_rows(&self, input: &[usize], rows: &mut Vec<SummaryRow>) -> Result<Vec<usize>> {
        self.inner().summary_rows(input, rows)
    }
    fn num_params(&self) -> usize {
        self.inner().num_params()
    }
    fn children(&self) -> Vec<(&str, &dyn Layer<T>)> {
        self.inner().children()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layers::{Dropout, DropoutConfig, Linear, LinearConfig, ReLU};
    use crate::model::Sequential;
    use crate::testutil::assert_close;
    use crate::zoo::lenet5_modern;
    use ndarray::IxDyn;

    fn random(shape: &[usize], seed: u64) -> Tensor<f64> {
        let mut rng = Rng64::seed(seed);
        Tensor::from_shape_fn(IxDyn(shape), |_| rng.uniform() * 2.0 - 1.0)
    }

    /// Every parameter value or gradient of a model, in `visit` order.
    fn flat(model: &impl Layer<f64>, grads: bool) -> Tensor<f64> {
        let mut v = Vec::new();
        model.visit(&mut |_, slot| match slot {
            Slot::Param(p) if grads => v.extend(p.grad.iter().copied()),
            Slot::Param(p) => v.extend(p.value.iter().copied()),
            Slot::Buffer(b) if !grads => v.extend(b.iter().copied()),
            Slot::Buffer(_) => {}
        });
        Tensor::from_shape_vec(IxDyn(&[v.len()]), v).unwrap_or_else(|_| unreachable!())
    }

    /// A single model with the parameters of `from` (the independent reference).
    fn reference(from: &impl Layer<f64>) -> Sequential<f64> {
        let mut model = lenet5_modern::<f64>(10).unwrap_or_else(|e| panic!("{e}"));
        let values = flat(from, false);
        let mut at = 0;
        model.visit_mut(&mut |_, slot| {
            let t = match slot {
                SlotMut::Param(p) => &mut p.value,
                SlotMut::Buffer(b) => b,
            };
            for v in t.iter_mut() {
                *v = values[at];
                at += 1;
            }
        });
        model
    }

    #[test]
    fn outputs_and_gradients_are_those_of_one_model() {
        for replicas in [1, 2, 3] {
            for batch in [1, 2, 5, 7] {
                let mut net = Replicated::new(replicas, || lenet5_modern::<f64>(10))
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut single = reference(net.inner());
                let x = random(&[batch, 1, 28, 28], 1 + batch as u64);
                let dy = random(&[batch, 10], 100 + batch as u64);
                let what = format!("{replicas} replicas, batch {batch}");
                let y = net.forward(&x).unwrap_or_else(|e| panic!("{e}"));
                let y_ref = single.forward(&x).unwrap_or_else(|e| panic!("{e}"));
                assert_close(&format!("{what}: output"), &y, &y_ref);
                let dx = net.backward(&dy).unwrap_or_else(|e| panic!("{e}"));
                let dx_ref = single.backward(&dy).unwrap_or_else(|e| panic!("{e}"));
                assert_close(&format!("{what}: grad_input"), &dx, &dx_ref);
                assert_close(
                    &format!("{what}: parameter gradients"),
                    &flat(&net, true),
                    &flat(&single, true),
                );
                assert!(
                    flat(&net, true).iter().any(|g| *g != 0.0),
                    "{what}: zero gradients"
                );
            }
        }
    }

    #[test]
    fn backward_params_gives_the_parameter_gradients_of_backward() {
        for (replicas, batch) in [(1, 3), (2, 5), (3, 2), (3, 0)] {
            let mut net = Replicated::new(replicas, || lenet5_modern::<f64>(10))
                .unwrap_or_else(|e| panic!("{e}"));
            let mut single = reference(net.inner());
            let x = random(&[batch, 1, 28, 28], 7 + batch as u64);
            let dy = random(&[batch, 10], 70 + batch as u64);
            net.forward(&x).unwrap_or_else(|e| panic!("{e}"));
            single.forward(&x).unwrap_or_else(|e| panic!("{e}"));
            net.backward_params(&dy).unwrap_or_else(|e| panic!("{e}"));
            single.backward(&dy).unwrap_or_else(|e| panic!("{e}"));
            assert_close(
                &format!("{replicas} replicas, batch {batch}: parameter gradients"),
                &flat(&net, true),
                &flat(&single, true),
            );
        }
        let mut net =
            Replicated::new(2, || lenet5_modern::<f64>(10)).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            net.backward_params(&random(&[2, 10], 1)),
            Err(Error::BackwardBeforeForward { .. })
        ));
    }

    #[test]
    fn gradients_accumulate_and_updates_reach_every_replica() {
        let mut net =
            Replicated::new(2, || lenet5_modern::<f64>(10)).unwrap_or_else(|e| panic!("{e}"));
        let mut single = reference(net.inner());
        for step in 0..3u64 {
            let x = random(&[6, 1, 28, 28], 10 + step);
            let dy = random(&[6, 10], 20 + step);
            for model in [&mut net as &mut dyn Layer<f64>, &mut single] {
                model.forward(&x).unwrap_or_else(|e| panic!("{e}"));
                model.backward(&dy).unwrap_or_else(|e| panic!("{e}"));
            }
            // Two backward passes without zero_grad: the gradients add up.
            assert_close(
                "accumulated gradients",
                &flat(&net, true),
                &flat(&single, true),
            );
            // A plain SGD step through `visit_mut`, as an optimizer does it.
            for model in [&mut net as &mut dyn Layer<f64>, &mut single] {
                model.visit_mut(&mut |_, slot| {
                    if let SlotMut::Param(p) = slot {
                        let g = p.grad.clone();
                        p.value.zip_mut_with(&g, |v, g| *v -= 0.1 * g);
                    }
                });
            }
        }
        // After three steps with accumulating gradients, replica 1 computes with the updated
        // weights: the whole batch agrees with the single model.
        let x = random(&[5, 1, 28, 28], 99);
        let y = net.forward(&x).unwrap_or_else(|e| panic!("{e}"));
        let y_ref = single.forward(&x).unwrap_or_else(|e| panic!("{e}"));
        assert_close("output after updates", &y, &y_ref);
        net.zero_grad();
        assert!(flat(&net, true).iter().all(|g| *g == 0.0));
    }

    fn with_dropout() -> Result<Sequential<f64>> {
        Ok(Sequential::new()
            .add(Linear::new(LinearConfig::new(16, 32))?)
            .add(ReLU::new())
            .add(Dropout::new(DropoutConfig::new().p(0.5).seed(3))?)
            .add(Linear::new(LinearConfig::new(32, 4))?))
    }

    #[test]
    fn dropout_masks_are_reproducible_and_differ_between_replicas() {
        let run = || {
            crate::init::manual_seed(0);
            let mut net = Replicated::new(2, with_dropout).unwrap_or_else(|e| panic!("{e}"));
            // The same 4 samples twice: without forked generators both replicas would drop
            // the same units and the two halves of the output would be equal.
            let half = random(&[4, 16], 5);
            let x = ndarray::concatenate(Axis(0), &[half.view(), half.view()])
                .unwrap_or_else(|e| panic!("{e}"));
            let a = net.forward(&x).unwrap_or_else(|e| panic!("{e}"));
            let b = net.forward(&x).unwrap_or_else(|e| panic!("{e}"));
            (a, b)
        };
        let (a1, b1) = run();
        let (a2, b2) = run();
        assert_eq!(a1, a2, "same seed, same masks");
        assert_eq!(b1, b2);
        assert_ne!(a1, b1, "the generators advance between steps");
        let top = a1.slice_axis(Axis(0), Slice::from(0..4));
        let bottom = a1.slice_axis(Axis(0), Slice::from(4..8));
        assert_ne!(top, bottom, "replica 1 draws its own mask");
        // Only replica 0's generators are visible (checkpoints store one model's).
        let mut net = Replicated::new(3, with_dropout).unwrap_or_else(|e| panic!("{e}"));
        let mut names = Vec::new();
        net.visit_rngs_mut(&mut |name, _| names.push(name.to_string()));
        assert_eq!(names, vec!["2.rng".to_string()]);
    }

    #[test]
    fn a_given_model_is_replica_0_and_the_others_take_its_weights() {
        let mut trained = lenet5_modern::<f64>(10).unwrap_or_else(|e| panic!("{e}"));
        trained.visit_mut(&mut |_, slot| {
            if let SlotMut::Param(p) = slot {
                p.value.mapv_inplace(|v| 0.5 * v + 0.01);
            }
        });
        let want = flat(&trained, false);
        let mut net = Replicated::from_model(trained, 3, || lenet5_modern::<f64>(10))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_close("replica 0's weights", &flat(&net, false), &want);
        let mut single = reference(net.inner());
        let x = random(&[6, 1, 28, 28], 7);
        let y = net.forward(&x).unwrap_or_else(|e| panic!("{e}"));
        let y_ref = single.forward(&x).unwrap_or_else(|e| panic!("{e}"));
        assert_close("output of 3 replicas", &y, &y_ref);
    }

    #[test]
    fn bad_use_is_a_typed_error() {
        assert!(matches!(
            Replicated::new(0, || lenet5_modern::<f64>(10)),
            Err(Error::InvalidConfig { .. })
        ));
        assert!(matches!(
            Replicated::from_model(
                lenet5_modern::<f64>(10).unwrap_or_else(|e| panic!("{e}")),
                0,
                || lenet5_modern::<f64>(10)
            ),
            Err(Error::InvalidConfig { .. })
        ));
        let mut calls = 0;
        let different = Replicated::new(2, || {
            calls += 1;
            lenet5_modern::<f64>(if calls == 1 { 10 } else { 11 })
        });
        assert!(matches!(different, Err(Error::InvalidConfig { .. })));
        let mut net =
            Replicated::new(2, || lenet5_modern::<f64>(10)).unwrap_or_else(|e| panic!("{e}"));
        let dy = random(&[4, 10], 1);
        assert!(matches!(
            net.backward(&dy),
            Err(Error::BackwardBeforeForward { .. })
        ));
        net.forward(&random(&[4, 1, 28, 28], 2))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            net.backward(&random(&[3, 10], 3)),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(net.forward(&random(&[4, 1, 27, 28], 2)).is_err());
        // An empty batch passes through replica 0.
        let y = net
            .forward(&random(&[0, 1, 28, 28], 2))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(y.shape(), &[0, 10]);
    }
}
