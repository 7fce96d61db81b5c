//! [`SyncBatchNorm2d`]: batch normalisation whose statistics run over the global batch.

use super::comm::Communicator;
use crate::error::{Error, Result};
use crate::kernels::norm;
use crate::layer::{Layer, Mode, Param, Slot, SlotMut};
use crate::layers::{
    accumulate_affine_grads, check_channel_vectors, update_running, BatchNorm2dConfig,
};
use crate::tensor::{contiguous, from_vec, Float, Tensor};
use ndarray::IxDyn;
use std::sync::Arc;

/// `nn.SyncBatchNorm` for `[N, C, H, W]` inputs: in training, the mean and variance of each
/// channel are those of the *global* batch (every process's share together), so a
/// [`DataParallel`](super::DataParallel) model with it computes what one process computes on
/// the whole batch. Same parameters, buffers and `state_dict` names as
/// [`BatchNorm2d`](crate::layers::BatchNorm2d), so weights move freely between the two.
///
/// ```text
/// forward (train):  M = Σ_r m_r,  μ = Σ_r Σx / M,  σ² = Σ_r Σ(x - μ)² / M     (2 all-reduces)
///                   running stats updated with μ and σ²·M/(M-1), as BatchNorm2d
/// backward:         s_r = m_r / M (process r's share; its loss is a mean over its share)
///                   A = Σ_r s_r·Σdy,  B = Σ_r s_r·Σdy·x̂                         (1 all-reduce)
///                   dx = a·(dy - A/m_r - x̂·B/m_r),  a = weight·istd
///                   dweight += Σdy·x̂, dbias += Σdy (local; DataParallel averages them)
/// ```
///
/// Every process must call `forward` and `backward` with at least one sample (a process with
/// an empty share would not join the statistics' all-reduce; the others would then fail
/// after the communicator's timeout). Evaluation (and [`Layer::infer`]) uses the running
/// statistics, without communication.
pub struct SyncBatchNorm2d<T: Float> {
    cfg: BatchNorm2dConfig,
    comm: Arc<Communicator>,
    weight: Param<T>,
    bias: Param<T>,
    running_mean: Tensor<T>,
    running_var: Tensor<T>,
    num_batches_tracked: Tensor<T>,
    mode: Mode,
    /// x̂, istd, this process's values per channel `m_r` and the global `M`.
    cache: Option<(Tensor<T>, Vec<T>, f64, f64)>,
}

impl<T: Float> SyncBatchNorm2d<T> {
    /// A synchronised batch norm over the processes of `comm` (affine, tracking running
    /// statistics: `affine(false)` and `track_running_stats(false)` are refused).
    pub fn new(cfg: BatchNorm2dConfig, comm: Arc<Communicator>) -> Result<Self> {
        // BatchNorm2d validates the configuration (features, eps, momentum).
        crate::layers::BatchNorm2d::<T>::new(cfg)?;
        if !cfg.affine || !cfg.track_running_stats {
            return Err(Error::config(
                "SyncBatchNorm2d",
                "only the affine, running-statistics form is supported",
            ));
        }
        let c = cfg.num_features;
        let vector = |v: f64| Tensor::from_elem(IxDyn(&[c]), T::of(v));
        Ok(SyncBatchNorm2d {
            cfg,
            comm,
            weight: Param::new(vector(1.0)),
            bias: Param::new(vector(0.0)),
            running_mean: vector(0.0),
            running_var: vector(1.0),
            num_batches_tracked: Tensor::from_elem(IxDyn(&[]), T::zero()),
            mode: Mode::Train,
            cache: None,
        })
    }

    fn name(&self) -> String {
        format!("SyncBatchNorm2d({})", self.cfg.num_features)
    }

    fn dims(&self, shape: &[usize]) -> Result<[usize; 4]> {
        let c = self.cfg.num_features;
        match *shape {
            [n, ch, h, w] if ch == c => Ok([n, ch, h, w]),
            _ => Err(Error::shape(self.name(), format!("[N, {c}, H, W]"), shape)),
        }
    }

    fn istd(&self, var: &[T]) -> Vec<T> {
        norm::inverse_std(var, self.cfg.eps)
    }

    /// Weight, bias, their gradients and the running statistics all have shape `[C]`.
    fn check_params(&self) -> Result<()> {
        check_channel_vectors(
            &self.name(),
            self.cfg.num_features,
            [
                ("weight", &self.weight.value),
                ("weight gradient", &self.weight.grad),
                ("bias", &self.bias.value),
                ("bias gradient", &self.bias.grad),
                ("running_mean", &self.running_mean),
                ("running_var", &self.running_var),
            ],
        )
    }

    fn values(t: &Tensor<T>) -> Vec<T> {
        t.iter().copied().collect()
    }
}

impl<T: Float> Layer<T> for SyncBatchNorm2d<T> {
    fn kind(&self) -> &'static str {
        "SyncBatchNorm2d"
    }

    fn describe(&self) -> String {
        let average = match self.cfg.running_momentum() {
            Some(momentum) => format!("momentum {momentum}"),
            None => "cumulative average".to_string(),
        };
        format!(
            "{} features, eps {}, {average}, statistics over {} processes",
            self.cfg.num_features,
            self.cfg.eps,
            self.comm.size()
        )
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.dims(input)?;
        Ok(input.to_vec())
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        if self.mode == Mode::Eval {
            self.cache = None;
            return self.infer(input);
        }
        let [n, c, h, w] = self.dims(input.shape())?;
        self.check_params()?;
        let dims = [n, c, h * w];
        let x = contiguous(input);
        let m_local = (n * h * w) as f64;
        // Pass 1: the global mean.
        let (sum, _) = norm::sum_and_dot(&x, &x, dims);
        let mut s: Vec<T> = sum;
        s.push(T::of(m_local));
        self.comm.all_reduce_sum(&mut s)?;
        let (sums, count) = s.split_at_checked(c).unwrap_or((&s, &[]));
        let m_global = count.first().map_or(0.0, |m| m.as_f64());
        if m_global <= 1.0 {
            return Err(Error::shape(
                self.name(),
                "more than 1 value per channel over all processes",
                input.shape(),
            ));
        }
        let mean: Vec<T> = sums.iter().map(|&v| v / T::of(m_global)).collect();
        // Pass 2: the global biased variance, Σ (x - μ)² / M.
        let hw = h * w;
        let dev: Vec<T> = x
            .chunks(hw.max(1))
            .zip(mean.iter().cycle())
            .flat_map(|(plane, &m)| plane.iter().map(move |&v| v - m))
            .collect();
        let (_, mut sq) = norm::sum_and_dot(&dev, &dev, dims);
        self.comm.all_reduce_sum(&mut sq)?;
        let var: Vec<T> = sq.iter().map(|&v| v / T::of(m_global)).collect();
        // Running statistics, as BatchNorm2d with the global batch.
        update_running(
            &mut self.running_mean,
            &mut self.running_var,
            &mut self.num_batches_tracked,
            (&mean, &var),
            self.cfg.running_momentum(),
            m_global,
        );
        let istd = self.istd(&var);
        let (weight, bias) = (
            Self::values(&self.weight.value),
            Self::values(&self.bias.value),
        );
        let mut xhat = vec![T::zero(); x.len()];
        let mut y = vec![T::zero(); x.len()];
        norm::normalize(&x, &mean, &istd, &weight, &bias, c, hw, &mut xhat, &mut y);
        self.cache = Some((from_vec(input.shape(), xhat), istd, m_local, m_global));
        Ok(from_vec(input.shape(), y))
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let [_, c, h, w] = self.dims(input.shape())?;
        self.check_params()?;
        let x = contiguous(input);
        let istd = self.istd(&Self::values(&self.running_var));
        let mut y = vec![T::zero(); x.len()];
        norm::normalize_output(
            &x,
            &Self::values(&self.running_mean),
            &istd,
            &Self::values(&self.weight.value),
            &Self::values(&self.bias.value),
            c,
            h * w,
            &mut y,
        );
        Ok(from_vec(input.shape(), y))
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let name = self.name();
        let (xhat, istd, m_local, m_global) =
            self.cache
                .as_ref()
                .ok_or_else(|| Error::BackwardBeforeForward {
                    layer: name.clone(),
                })?;
        if xhat.shape() != grad_output.shape() {
            return Err(Error::shape(
                name,
                format!("{:?} (the forward output)", xhat.shape()),
                grad_output.shape(),
            ));
        }
        let [n, c, h, w] = self.dims(grad_output.shape())?;
        self.check_params()?;
        let dims = [n, c, h * w];
        let (xh, dy) = (contiguous(xhat), contiguous(grad_output));
        let (sum_dy, sum_dy_xhat) = norm::sum_and_dot(&dy, &xh, dims);
        let share = T::of(m_local / m_global);
        let mut ab: Vec<T> = sum_dy
            .iter()
            .chain(&sum_dy_xhat)
            .map(|&v| v * share)
            .collect();
        self.comm.all_reduce_sum(&mut ab)?;
        let (sum_all, dot_all) = ab.split_at_checked(c).unwrap_or((&ab, &[]));
        let weight = Self::values(&self.weight.value);
        let batch = Some((sum_all, dot_all, T::of(*m_local)));
        let dx = norm::batch_norm_input_grad(&dy, &xh, &weight, istd, batch, h * w);
        accumulate_affine_grads(&mut self.weight, &mut self.bias, &sum_dy_xhat, &sum_dy);
        Ok(from_vec(grad_output.shape(), dx))
    }

    fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        f("weight", Slot::Param(&self.weight));
        f("bias", Slot::Param(&self.bias));
        f("running_mean", Slot::Buffer(&self.running_mean));
        f("running_var", Slot::Buffer(&self.running_var));
        f(
            "num_batches_tracked",
            Slot::Buffer(&self.num_batches_tracked),
        );
    }

    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {
        f("weight", SlotMut::Param(&mut self.weight));
        f("bias", SlotMut::Param(&mut self.bias));
        f("running_mean", SlotMut::Buffer(&mut self.running_mean));
        f("running_var", SlotMut::Buffer(&mut self.running_var));
        f(
            "num_batches_tracked",
            SlotMut::Buffer(&mut self.num_batches_tracked),
        );
    }
}
