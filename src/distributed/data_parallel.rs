//! [`DataParallel`]: one replica of a model per process, gradients averaged after `backward`.

use super::comm::Communicator;
use crate::collective::Collective;
use crate::error::{Error, Result};
use crate::layer::{Epilogue, Layer, Mode, Slot, SlotMut};
use crate::model::SummaryRow;
use crate::rng::Rng64;
use crate::tensor::{contiguous, Float, Tensor};
use std::marker::PhantomData;
use std::ops::Range;
use std::sync::Arc;

/// The default bucket size: 25 MiB of gradients per all-reduce message (as PyTorch's DDP).
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Synchronous data-parallel training of any layer: every process holds a replica, runs
/// `forward` and `backward` on its share of the global batch, and `backward` returns only
/// after the gradients are averaged over the processes, so that after the same optimizer step
/// every replica holds the same weights, bit for bit.
///
/// * [`DataParallel::new`] broadcasts process 0's parameters and buffers.
/// * The wrapper is a [`Layer`] with the wrapped model's own `state_dict` names (no
///   `module.` prefix), so optimizers, weight files, summaries and the
///   [`Trainer`](crate::train::Trainer) work unchanged; the trainer finds the process group
///   through [`Layer::collective`].
/// * Averaging: process `r` with `n_r` samples in its last `forward` contributes
///   `n_r · grad_r`; the sum over processes is divided by `N = Σ n_r`. For a loss that is a
///   mean over the batch (cross-entropy, MSE) this is the gradient of the mean loss over the
///   global batch, also when shards are uneven or a process has no sample at a step.
/// * Bucketing: gradients are flattened, in reverse `visit` order (last layers first), into
///   one contiguous buffer cut into buckets of about [`DEFAULT_BUCKET_BYTES`]; one
///   `MPI_Iallreduce` per bucket, all in flight together.
/// * Buffers (batch-norm running statistics) are set to process 0's values in the same
///   messages (as DDP's `broadcast_buffers`): batch statistics are per process by default;
///   [`SyncBatchNorm2d`](super::SyncBatchNorm2d) computes them over the global batch instead.
pub struct DataParallel<T: Float, L: Layer<T>> {
    inner: L,
    comm: Arc<Communicator>,
    layout: Layout,
    bucket_bytes: usize,
    /// `n_r` and input shape of the last training `forward`, if any.
    last: Option<Vec<usize>>,
    send: Vec<T>,
    recv: Vec<T>,
    _t: PhantomData<T>,
}

/// Where each parameter and buffer sits in the flat buffer.
#[derive(Clone, Debug, PartialEq)]
struct Layout {
    /// `(name, len)` of each parameter in `visit` order.
    params: Vec<(String, usize)>,
    /// `(name, len)` of each buffer in `visit` order.
    buffers: Vec<(String, usize)>,
}

impl Layout {
    fn of<T: Float>(layer: &impl Layer<T>) -> Self {
        let mut layout = Layout {
            params: Vec::new(),
            buffers: Vec::new(),
        };
        layer.visit(&mut |name, slot| match slot {
            Slot::Param(p) => layout.params.push((name.to_string(), p.len())),
            Slot::Buffer(b) => layout.buffers.push((name.to_string(), b.len())),
        });
        layout
    }

    fn param_len(&self) -> usize {
        self.params.iter().map(|p| p.1).sum()
    }

    fn buffer_len(&self) -> usize {
        self.buffers.iter().map(|p| p.1).sum()
    }

    /// A text every process can compare: names and sizes in order.
    fn fingerprint(&self) -> Vec<u8> {
        let mut text = String::new();
        for (kind, list) in [("p", &self.params), ("b", &self.buffers)] {
            for (name, len) in list {
                text.push_str(&format!("{kind} {name} {len}\n"));
            }
        }
        text.into_bytes()
    }
}

impl<T: Float, L: Layer<T>> DataParallel<T, L> {
    /// Wraps `layer` for data-parallel training over the processes of `communicator` (usually
    /// `universe.world()`; a private duplicate is used). Collective: every process calls it.
    ///
    /// Checks that every process built the same architecture (parameter and buffer names and
    /// sizes), then copies process 0's parameters and buffers to every process.
    pub fn new(layer: L, communicator: &impl mpi::traits::Communicator) -> Result<Self> {
        Self::with_communicator(layer, Arc::new(Communicator::new(communicator)?))
    }

    /// As [`DataParallel::new`], on an existing [`Communicator`] (which may be shared with
    /// other models; their operations then must happen in the same order on every process).
    pub fn with_communicator(layer: L, comm: Arc<Communicator>) -> Result<Self> {
        let layout = Layout::of(&layer);
        let mut dp = DataParallel {
            inner: layer,
            comm,
            layout,
            bucket_bytes: DEFAULT_BUCKET_BYTES,
            last: None,
            send: Vec::new(),
            recv: Vec::new(),
            _t: PhantomData,
        };
        dp.check_same_model()?;
        dp.broadcast_state()?;
        Ok(dp)
    }

    /// Sets the size of a gradient bucket in bytes (at least one value per bucket).
    pub fn with_bucket_bytes(mut self, bytes: usize) -> Self {
        self.bucket_bytes = bytes.max(std::mem::size_of::<T>());
        self
    }

    /// The communicator.
    pub fn communicator(&self) -> &Arc<Communicator> {
        &self.comm
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// The number of processes.
    pub fn world_size(&self) -> usize {
        self.comm.size()
    }

    /// The wrapped model.
    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// The wrapped model, mutably. Changing its parameters on one process only makes the
    /// replicas differ; [`DataParallel::broadcast_state`] makes them equal again.
    pub fn inner_mut(&mut self) -> &mut L {
        &mut self.inner
    }

    /// Unwraps the model.
    pub fn into_inner(self) -> L {
        self.inner
    }

    /// The gradient buckets: ranges of the flat gradient buffer, each one all-reduce message.
    pub fn bucket_ranges(&self) -> Vec<Range<usize>> {
        buckets(
            self.layout.param_len(),
            self.layout.buffer_len() + 1,
            self.bucket_bytes / std::mem::size_of::<T>(),
        )
    }

    /// Fails unless the wrapped model still has the parameters and buffers (names and sizes)
    /// it had at construction, each gradient the size of its parameter: the flat buffers are
    /// cut by that layout. [`DataParallel::inner_mut`] or `visit_mut` can change it.
    fn check_layout(&self) -> Result<()> {
        let mut grads_fit = true;
        self.inner.visit(&mut |_, slot| {
            if let Slot::Param(p) = slot {
                grads_fit &= p.grad.len() == p.value.len();
            }
        });
        if !grads_fit || Layout::of(&self.inner) != self.layout {
            return Err(Error::Distributed(format!(
                "rank {}: the model's parameters or buffers changed shape since \
                 DataParallel was built (or a gradient is not the size of its parameter)",
                self.comm.rank()
            )));
        }
        Ok(())
    }

    /// Copies process 0's parameters and buffers to every process. Collective.
    // Indexing: `flat` holds every value of the checked layout (process 0's has the same
    // layout, `check_same_model`), and `at` walks that layout.
    #[allow(clippy::indexing_slicing)]
    pub fn broadcast_state(&mut self) -> Result<()> {
        self.check_layout()?;
        let mut flat = Vec::with_capacity(self.layout.param_len() + self.layout.buffer_len());
        self.inner.visit(&mut |_, slot| match slot {
            Slot::Param(p) => flat.extend(contiguous(&p.value).iter().copied()),
            Slot::Buffer(b) => flat.extend(contiguous(b).iter().copied()),
        });
        let flat = self.comm.broadcast(flat, 0)?;
        let mut at = 0;
        self.inner.visit_mut(&mut |_, slot| {
            let t = match slot {
                SlotMut::Param(p) => &mut p.value,
                SlotMut::Buffer(b) => b,
            };
            let n = t.len();
            fill(t, &flat[at..at + n]);
            at += n;
        });
        Ok(())
    }

    /// Fails on every process unless all built the same parameter and buffer layout.
    fn check_same_model(&self) -> Result<()> {
        let mine = self.layout.fingerprint();
        let root = self.comm.broadcast_bytes(mine.clone(), 0)?;
        let mut differ = [f64::from(u8::from(root != mine))];
        Collective::all_reduce_sum(self.comm.as_ref(), &mut differ)?;
        if differ[0] > 0.0 {
            return Err(Error::Distributed(format!(
                "{} of {} processes built a model whose parameters and buffers differ from \
                 process 0's ({} tensors here{})",
                differ[0],
                self.comm.size(),
                self.layout.params.len() + self.layout.buffers.len(),
                if root != mine {
                    ", this one among them"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }

    /// Averages the gradients (weighted by each process's batch size) and sets the buffers to
    /// process 0's, in one set of bucketed all-reduces. Collective.
    // Indexing: `send` and `recv` hold `np + nb + 1` values and the layout is checked first,
    // so every parameter and buffer range computed from it lies inside them.
    #[allow(clippy::indexing_slicing)]
    pub fn synchronize(&mut self) -> Result<()> {
        self.check_layout()?;
        let local = self
            .last
            .as_ref()
            .and_then(|s| s.first().copied())
            .unwrap_or(0);
        let (np, nb) = (self.layout.param_len(), self.layout.buffer_len());
        let mut send = std::mem::take(&mut self.send);
        send.clear();
        send.resize(np + nb + 1, T::zero());
        // Gradients, last parameters first (they are ready first in a backward pass).
        let weight = T::of(local as f64);
        let mut grads: Vec<Vec<T>> = Vec::new();
        let root = self.comm.rank() == 0;
        let mut at_buffer = np;
        self.inner.visit(&mut |_, slot| match slot {
            Slot::Param(p) => grads.push(if local == 0 {
                vec![T::zero(); p.len()]
            } else {
                contiguous(&p.grad).iter().map(|&g| g * weight).collect()
            }),
            Slot::Buffer(b) => {
                if root {
                    let values = contiguous(b);
                    send[at_buffer..at_buffer + values.len()].copy_from_slice(&values);
                }
                at_buffer += b.len();
            }
        });
        let mut at = 0;
        for g in grads.iter().rev() {
            send[at..at + g.len()].copy_from_slice(g);
            at += g.len();
        }
        send[np + nb] = T::of(local as f64);
        let recv = std::mem::take(&mut self.recv);
        let mut recv = if recv.len() == send.len() {
            recv
        } else {
            vec![T::zero(); send.len()]
        };
        recv.iter_mut().for_each(|v| *v = T::zero());
        let ranges = self.bucket_ranges();
        let (send, recv) = self.comm.all_reduce_sum_ranges(send, recv, &ranges)?;
        let total = recv[np + nb];
        // Unpack: parameters in reverse order, buffers in order.
        let mut ends = Vec::with_capacity(grads.len());
        let mut at = 0;
        for g in grads.iter().rev() {
            at += g.len();
            ends.push(at);
        }
        ends.reverse();
        let (mut k, mut at_buffer) = (0, np);
        self.inner.visit_mut(&mut |_, slot| match slot {
            SlotMut::Param(p) => {
                if total > T::zero() {
                    let end = ends[k];
                    let start = end - p.len();
                    let mean: Vec<T> = recv[start..end].iter().map(|&s| s / total).collect();
                    fill(&mut p.grad, &mean);
                }
                k += 1;
            }
            SlotMut::Buffer(b) => {
                let n = b.len();
                fill(b, &recv[at_buffer..at_buffer + n]);
                at_buffer += n;
            }
        });
        self.send = send;
        self.recv = recv;
        Ok(())
    }

    /// The input shape of the last forward, or the typed error of a backward before it.
    fn last_input_shape(&self) -> Result<Vec<usize>> {
        self.last
            .clone()
            .ok_or_else(|| Error::BackwardBeforeForward {
                layer: format!("DataParallel({})", self.inner.kind()),
            })
    }
}

/// Splits `params` gradient values into buckets of about `per_bucket` values, the last bucket
/// also carrying the `tail` values (buffers and the sample count).
fn buckets(params: usize, tail: usize, per_bucket: usize) -> Vec<Range<usize>> {
    let per = per_bucket.max(1);
    let mut ranges = Vec::new();
    let mut start = 0;
    while params - start > per {
        ranges.push(start..start + per);
        start += per;
    }
    ranges.push(start..params + tail);
    ranges
}

/// Writes `values` (row-major) into `t`.
fn fill<T: Float>(t: &mut Tensor<T>, values: &[T]) {
    if let Some(slice) = t.as_slice_mut().filter(|s| s.len() == values.len()) {
        slice.copy_from_slice(values);
    } else {
        for (dst, &v) in t.iter_mut().zip(values) {
            *dst = v;
        }
    }
}

impl<T: Float, L: Layer<T>> Layer<T> for DataParallel<T, L> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.inner.output_shape(input)
    }

    /// The wrapped model's forward on this process's share of the batch. A share of zero
    /// samples (an uneven last batch) skips the model and returns an empty output.
    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        self.last = None;
        let shape = input.shape().to_vec();
        let output = if shape.first() == Some(&0) {
            let out = self.inner.output_shape(&shape)?;
            Tensor::zeros(ndarray::IxDyn(&out))
        } else {
            self.inner.forward(input)?
        };
        self.last = Some(shape);
        Ok(output)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        if input.shape().first() == Some(&0) {
            let out = self.inner.output_shape(input.shape())?;
            return Ok(Tensor::zeros(ndarray::IxDyn(&out)));
        }
        self.inner.infer(input)
    }

    fn epilogue(&self) -> Option<Epilogue<T>> {
        self.inner.epilogue()
    }

    fn infer_fused(
        &self,
        input: &Tensor<T>,
        epilogues: &[Epilogue<T>],
    ) -> Result<Option<Tensor<T>>> {
        self.inner.infer_fused(input, epilogues)
    }

    /// The wrapped model's backward, then [`DataParallel::synchronize`]: returns once the
    /// parameter gradients hold their average over the global batch.
    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let shape = self.last_input_shape()?;
        let grad_input = if shape.first() == Some(&0) {
            Tensor::zeros(ndarray::IxDyn(&shape))
        } else {
            self.inner.backward(grad_output)?
        };
        self.synchronize()?;
        Ok(grad_input)
    }

    /// The wrapped model's [`Layer::backward_params`], then [`DataParallel::synchronize`].
    fn backward_params(&mut self, grad_output: &Tensor<T>) -> Result<()> {
        let shape = self.last_input_shape()?;
        if shape.first() != Some(&0) {
            self.inner.backward_params(grad_output)?;
        }
        self.synchronize()
    }

    fn set_mode(&mut self, mode: Mode) {
        self.inner.set_mode(mode)
    }
    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        self.inner.visit(f)
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {
        self.inner.visit_mut(f)
    }
    fn visit_rngs_mut(&mut self, f: &mut dyn FnMut(&str, &mut Rng64)) {
        self.inner.visit_rngs_mut(f)
    }
    fn collective(&self) -> Option<Arc<dyn Collective>> {
        Some(self.comm.clone())
    }
    fn zero_grad(&mut self) {
        self.inner.zero_grad()
    }
    fn summary_rows(&self, input: &[usize], rows: &mut Vec<SummaryRow>) -> Result<Vec<usize>> {
        self.inner.summary_rows(input, rows)
    }
    fn num_params(&self) -> usize {
        self.inner.num_params()
    }
}

#[cfg(test)]
mod tests {
    use super::buckets;

    #[test]
    fn buckets_cover_the_buffer_in_few_messages() {
        assert_eq!(buckets(10, 3, 4), vec![0..4, 4..8, 8..13]);
        assert_eq!(buckets(8, 1, 4), vec![0..4, 4..9]);
        assert_eq!(buckets(0, 1, 4), vec![0..1]);
        assert_eq!(buckets(61_706, 1, 25 << 18), vec![0..61_707]);
    }
}
