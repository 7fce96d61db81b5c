use super::{expect_nchw, expect_shape};
use crate::error::{Error, Result};
use crate::kernels::norm;
use crate::layer::{Epilogue, Layer, Mode, Param, Slot, SlotMut};
use crate::tensor::{contiguous, from_vec, slice_mut, standard, Float, Tensor};
use ndarray::IxDyn;

/// Configuration of [`BatchNorm2d`], with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm2dConfig {
    /// Number of channels `C` of the `[N, C, H, W]` input.
    pub num_features: usize,
    /// Added to the variance inside the square root (default `1e-5`).
    pub eps: f64,
    /// Weight of the *new* batch statistic in the running averages (default `0.1`).
    pub momentum: f64,
    /// Average every batch equally instead (PyTorch's `momentum=None`): the new batch weighs
    /// `1 / num_batches_tracked` after the increment, and `momentum` is not used (default
    /// `false`).
    pub cumulative_average: bool,
    /// Learn a per-channel scale `weight` and shift `bias` (default `true`).
    pub affine: bool,
    /// Keep running statistics for evaluation (default `true`). Without them batch statistics
    /// are used in both modes.
    pub track_running_stats: bool,
}

impl BatchNorm2dConfig {
    /// PyTorch's defaults for `num_features` channels: eps 1e-5, momentum 0.1, affine,
    /// tracking running statistics.
    pub fn new(num_features: usize) -> Self {
        BatchNorm2dConfig {
            num_features,
            eps: 1e-5,
            momentum: 0.1,
            cumulative_average: false,
            affine: true,
            track_running_stats: true,
        }
    }

    /// Sets `eps`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// Sets `momentum`.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets `cumulative_average`: running statistics as the plain mean over every training
    /// batch so far, as PyTorch's `BatchNorm2d(momentum=None)`.
    pub fn cumulative_average(mut self, cumulative: bool) -> Self {
        self.cumulative_average = cumulative;
        self
    }

    /// The weight of the new batch in the running averages: `Some(momentum)`, or `None` for a
    /// cumulative average.
    pub(crate) fn running_momentum(&self) -> Option<f64> {
        (!self.cumulative_average).then_some(self.momentum)
    }

    /// Sets `affine`.
    pub fn affine(mut self, affine: bool) -> Self {
        self.affine = affine;
        self
    }

    /// Sets `track_running_stats`.
    pub fn track_running_stats(mut self, track: bool) -> Self {
        self.track_running_stats = track;
        self
    }
}

/// Batch normalisation of `[N, C, H, W]` activations per channel (Ioffe and Szegedy 2015),
/// matching `nn.BatchNorm2d`. Statistics run over the `m = N·H·W` values of each channel.
///
/// ```text
/// train:    μ = mean(x),  σ² = mean((x - μ)²)  (biased),  istd = 1 / sqrt(σ² + eps)
///           num_batches_tracked += 1
///           running_mean = (1 - momentum)·running_mean + momentum·μ
///           running_var  = (1 - momentum)·running_var  + momentum·σ²·m/(m-1)   (unbiased)
///           (momentum = 1 / num_batches_tracked with `cumulative_average`)
/// eval:     μ = running_mean,  istd = 1 / sqrt(running_var + eps)     (no update)
/// forward:  x̂ = (x - μ)·istd,   y = weight·x̂ + bias
/// backward: dweight += Σ dy·x̂,   dbias += Σ dy,   g = dy·weight
///           dx = istd·(g - mean(g) - x̂·mean(g·x̂))      batch statistics (train)
///           dx = istd·g                                 running statistics (eval)
/// ```
///
/// Forward keeps the input it is handed (no copy through [`Layer::forward_owned`]) and the
/// per-channel `μ` and `istd`; backward recomputes `x̂` from them, as PyTorch does, and
/// writes `dx` over the gradient it is handed ([`Layer::backward_owned`]).
///
/// Without `affine`, `weight = 1` and `bias = 0` are fixed. Without `track_running_stats`,
/// batch statistics are used in eval mode too (as PyTorch does). Batch statistics need
/// `m > 1`. State names: `weight`, `bias` (parameters, if affine), `running_mean`,
/// `running_var`, `num_batches_tracked` (buffers, if tracking; the count is a 0-d tensor).
#[derive(Clone, Debug)]
pub struct BatchNorm2d<T: Float> {
    cfg: BatchNorm2dConfig,
    affine: Option<Affine<T>>,
    running: Option<Running<T>>,
    mode: Mode,
    cache: Option<Cache<T>>,
}

#[derive(Clone, Debug)]
struct Affine<T: Float> {
    weight: Param<T>,
    bias: Param<T>,
}

#[derive(Clone, Debug)]
struct Running<T: Float> {
    mean: Tensor<T>,
    var: Tensor<T>,
    num_batches_tracked: Tensor<T>,
}

/// What backward needs: the input (standard layout), the per-channel `μ` and `istd` it was
/// normalised with (so `x̂ = (x - μ)·istd` can be recomputed), and whether they were the
/// batch's own statistics.
#[derive(Clone, Debug)]
struct Cache<T: Float> {
    x: Tensor<T>,
    mean: Vec<T>,
    istd: Vec<T>,
    batch_stats: bool,
}

impl<T: Float> BatchNorm2d<T> {
    /// A batch norm layer with `weight = 1`, `bias = 0`, `running_mean = 0`, `running_var = 1`,
    /// `num_batches_tracked = 0`, in training mode. Fails for zero features, a negative or
    /// non-finite `eps`, or a `momentum` outside `[0, 1]`.
    pub fn new(cfg: BatchNorm2dConfig) -> Result<Self> {
        let c = cfg.num_features;
        let fail = |msg: String| Err(Error::config(format!("BatchNorm2d({c})"), msg));
        if c == 0 {
            return fail("num_features must be at least 1".into());
        }
        crate::tensor::checked_numel(&format!("BatchNorm2d({c})"), &[c])?;
        if !(cfg.eps.is_finite() && cfg.eps >= 0.0) {
            return fail(format!("eps must be finite and >= 0, got {}", cfg.eps));
        }
        if !(0.0..=1.0).contains(&cfg.momentum) {
            return fail(format!("momentum must be in [0, 1], got {}", cfg.momentum));
        }
        let what = format!("BatchNorm2d({c})");
        let vector = |v: f64| -> Result<Tensor<T>> {
            let data = crate::tensor::try_filled(&what, c, T::of(v))?;
            Tensor::from_shape_vec(IxDyn(&[c]), data)
                .map_err(|e| Error::config(&what, e.to_string()))
        };
        let affine = match cfg.affine {
            true => Some(Affine {
                weight: Param::try_new(&what, vector(1.0)?)?,
                bias: Param::try_new(&what, vector(0.0)?)?,
            }),
            false => None,
        };
        let running = match cfg.track_running_stats {
            true => Some(Running {
                mean: vector(0.0)?,
                var: vector(1.0)?,
                num_batches_tracked: Tensor::from_elem(IxDyn(&[]), T::zero()),
            }),
            false => None,
        };
        Ok(BatchNorm2d {
            cfg,
            affine,
            running,
            mode: Mode::Train,
            cache: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> BatchNorm2dConfig {
        self.cfg
    }

    /// The current mode (training or evaluation).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn name(&self) -> String {
        format!("BatchNorm2d({})", self.cfg.num_features)
    }
}

impl<T: Float> Layer<T> for BatchNorm2d<T> {
    fn kind(&self) -> &'static str {
        "BatchNorm2d"
    }

    fn describe(&self) -> String {
        let c = &self.cfg;
        let mut s = match c.running_momentum() {
            Some(momentum) => format!(
                "{} features, eps {}, momentum {momentum}",
                c.num_features, c.eps
            ),
            None => format!(
                "{} features, eps {}, cumulative average",
                c.num_features, c.eps
            ),
        };
        if !c.affine {
            s += ", no affine";
        }
        if !c.track_running_stats {
            s += ", no running stats";
        }
        s
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        expect_nchw(&self.name(), input, Some(self.cfg.num_features))?;
        super::expect_numel(&self.name(), input)?;
        Ok(input.to_vec())
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        self.forward_owned(input.as_standard_layout().into_owned())
    }

    /// Keeps the input it is handed for backward, with no copy.
    fn forward_owned(&mut self, input: Tensor<T>) -> Result<Tensor<T>> {
        self.cache = None;
        let [n, c, h, w] = expect_nchw(&self.name(), input.shape(), Some(self.cfg.num_features))?;
        self.check_params()?;
        let dims = [n, c, h * w];
        let x = standard(input);
        let (weight, bias) = self.weight_bias();
        let (mean, istd, batch_stats, y) = match (self.mode, &self.running) {
            (Mode::Eval, Some(r)) => {
                let mean: Vec<T> = r.mean.iter().copied().collect();
                let istd = self.istd(&r.var.iter().copied().collect::<Vec<_>>());
                let y = norm::normalize_new(&contiguous(&x), dims, &mean, &istd, &weight, &bias);
                (mean, istd, false, y)
            }
            _ => {
                self.check_batch(dims, x.shape())?;
                let (stats, y) =
                    norm::train_forward(&contiguous(&x), dims, self.cfg.eps, &weight, &bias);
                if let (Mode::Train, Some(r)) = (self.mode, self.running.as_mut()) {
                    update_running(
                        &mut r.mean,
                        &mut r.var,
                        &mut r.num_batches_tracked,
                        (&stats.mean, &stats.var),
                        self.cfg.running_momentum(),
                        (n * h * w) as f64,
                    );
                }
                (stats.mean, stats.istd, true, y)
            }
        };
        let y = from_vec(x.shape(), y);
        self.cache = Some(Cache {
            x,
            mean,
            istd,
            batch_stats,
        });
        Ok(y)
    }

    /// Running statistics when tracked (whatever the mode), else the batch's own, as
    /// `forward` in eval mode.
    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let [n, c, h, w] = expect_nchw(&self.name(), input.shape(), Some(self.cfg.num_features))?;
        self.check_params()?;
        let x = contiguous(input);
        let (mean, var) = match &self.running {
            Some(r) => (
                r.mean.iter().copied().collect(),
                r.var.iter().copied().collect(),
            ),
            None => self.batch_stats(&x, [n, c, h * w], input.shape())?,
        };
        let (weight, bias) = self.weight_bias();
        let istd = self.istd(&var);
        let y = norm::normalize_new(&x, [n, c, h * w], &mean, &istd, &weight, &bias);
        Ok(from_vec(input.shape(), y))
    }

    /// With running statistics: `scale = weight·istd`, `shift = bias - running_mean·scale`.
    fn epilogue(&self) -> Option<Epilogue<T>> {
        // Mis-shaped parameters: no fusion, so that `infer` reports them.
        self.check_params().ok()?;
        let r = self.running.as_ref()?;
        let var: Vec<T> = r.var.iter().copied().collect();
        let (weight, bias) = self.weight_bias();
        let scale: Vec<T> = weight
            .iter()
            .zip(self.istd(&var))
            .map(|(&w, s)| w * s)
            .collect();
        let shift = bias
            .iter()
            .zip(r.mean.iter().zip(&scale))
            .map(|(&b, (&m, &a))| b - m * a)
            .collect();
        Some(Epilogue::Affine { scale, shift })
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        self.backward_owned(grad_output.as_standard_layout().into_owned())
    }

    /// Writes the input gradient over the gradient it is handed.
    fn backward_owned(&mut self, grad_output: Tensor<T>) -> Result<Tensor<T>> {
        let name = self.name();
        let cache = self.cache.as_ref().ok_or_else(|| Error::no_cache(&name))?;
        expect_shape(&name, cache.x.shape(), grad_output.shape())?;
        let [n, c, h, w] = expect_nchw(&name, grad_output.shape(), None)?;
        self.check_params()?;
        let (weight, _) = self.weight_bias();
        let mut dx = standard(grad_output);
        let (sum_dy, sum_dy_xhat) = norm::train_backward_in_place(
            slice_mut(&mut dx)?,
            &contiguous(&cache.x),
            [n, c, h * w],
            &cache.mean,
            &cache.istd,
            &weight,
            cache.batch_stats,
        );
        if let Some(a) = self.affine.as_mut() {
            accumulate_affine_grads(&mut a.weight, &mut a.bias, &sum_dy_xhat, &sum_dy);
        }
        Ok(dx)
    }

    fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        if let Some(a) = &self.affine {
            f("weight", Slot::Param(&a.weight));
            f("bias", Slot::Param(&a.bias));
        }
        if let Some(r) = &self.running {
            f("running_mean", Slot::Buffer(&r.mean));
            f("running_var", Slot::Buffer(&r.var));
            f("num_batches_tracked", Slot::Buffer(&r.num_batches_tracked));
        }
    }

    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {
        if let Some(a) = &mut self.affine {
            f("weight", SlotMut::Param(&mut a.weight));
            f("bias", SlotMut::Param(&mut a.bias));
        }
        if let Some(r) = &mut self.running {
            f("running_mean", SlotMut::Buffer(&mut r.mean));
            f("running_var", SlotMut::Buffer(&mut r.var));
            f(
                "num_batches_tracked",
                SlotMut::Buffer(&mut r.num_batches_tracked),
            );
        }
    }
}

impl<T: Float> BatchNorm2d<T> {
    /// Mean and biased variance of the batch, which needs more than one value per channel.
    fn batch_stats(&self, x: &[T], dims: [usize; 3], shape: &[usize]) -> Result<(Vec<T>, Vec<T>)> {
        self.check_batch(dims, shape)?;
        Ok(norm::mean_var(x, dims))
    }

    /// Batch statistics need more than one value per channel.
    fn check_batch(&self, [n, c, hw]: [usize; 3], shape: &[usize]) -> Result<()> {
        if n * hw <= 1 {
            let expected =
                format!("more than 1 value per channel (N·H·W > 1) for batch statistics, C = {c}");
            return Err(Error::shape(self.name(), expected, shape));
        }
        Ok(())
    }

    /// Every per-channel tensor has shape `[C]` (see [`check_channel_vectors`]).
    fn check_params(&self) -> Result<()> {
        let mut vectors: Vec<(&str, &Tensor<T>)> = Vec::new();
        if let Some(a) = &self.affine {
            vectors.extend([
                ("weight", &a.weight.value),
                ("weight gradient", &a.weight.grad),
                ("bias", &a.bias.value),
                ("bias gradient", &a.bias.grad),
            ]);
        }
        if let Some(r) = &self.running {
            vectors.extend([("running_mean", &r.mean), ("running_var", &r.var)]);
        }
        check_channel_vectors(&self.name(), self.cfg.num_features, vectors)
    }

    /// `1 / sqrt(var + eps)` per channel.
    fn istd(&self, var: &[T]) -> Vec<T> {
        norm::inverse_std(var, self.cfg.eps)
    }

    /// Per-channel weight and bias (`1` and `0` without affine).
    fn weight_bias(&self) -> (Vec<T>, Vec<T>) {
        match &self.affine {
            Some(a) => (
                a.weight.value.iter().copied().collect(),
                a.bias.value.iter().copied().collect(),
            ),
            None => (
                vec![T::one(); self.cfg.num_features],
                vec![T::zero(); self.cfg.num_features],
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The steps BatchNorm2d and SyncBatchNorm2d share (the sync layer only adds the all-reduces).

/// `num_batches_tracked += 1`; `running = (1 - momentum)·running + momentum·batch` for the
/// mean, and for the variance with the batch's biased `σ²` made unbiased by `m / (m - 1)` over
/// the `m` values it came from. A `momentum` of `None` is the cumulative average:
/// `1 / num_batches_tracked`, counted after the increment.
pub(crate) fn update_running<T: Float>(
    running_mean: &mut Tensor<T>,
    running_var: &mut Tensor<T>,
    num_batches_tracked: &mut Tensor<T>,
    (mean, var): (&[T], &[T]),
    momentum: Option<f64>,
    m: f64,
) {
    num_batches_tracked.mapv_inplace(|t| t + T::one());
    let mom = match momentum {
        Some(momentum) => T::of(momentum),
        None => num_batches_tracked.sum().recip(),
    };
    let unbiased = T::of(m / (m - 1.0));
    for (r, &b) in running_mean.iter_mut().zip(mean) {
        *r = (T::one() - mom) * *r + mom * b;
    }
    for (r, &b) in running_var.iter_mut().zip(var) {
        *r = (T::one() - mom) * *r + mom * b * unbiased;
    }
}

/// `dweight += Σ dy·x̂`, `dbias += Σ dy`, per channel.
pub(crate) fn accumulate_affine_grads<T: Float>(
    weight: &mut Param<T>,
    bias: &mut Param<T>,
    sum_dy_xhat: &[T],
    sum_dy: &[T],
) {
    for (g, &s) in weight.grad.iter_mut().zip(sum_dy_xhat) {
        *g += s;
    }
    for (g, &s) in bias.grad.iter_mut().zip(sum_dy) {
        *g += s;
    }
}

/// Checks that every per-channel tensor (weight, bias, their gradients, running statistics)
/// still has shape `[C]`: they are public through [`Layer::visit_mut`], and one of another
/// length would otherwise be read past its end by the per-channel loops.
pub(crate) fn check_channel_vectors<'a, T: Float + 'a>(
    layer: &str,
    c: usize,
    vectors: impl IntoIterator<Item = (&'a str, &'a Tensor<T>)>,
) -> Result<()> {
    for (what, t) in vectors {
        if t.shape() != [c] {
            return Err(Error::shape(
                format!("{layer} {what}"),
                format!("[{c}]"),
                t.shape(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};
    use crate::testutil::assert_f32_matches_f64;
    use crate::testutil::{assert_close, parity};

    /// Sets weight, bias and running statistics to random values (running_var > 0).
    fn randomize(bn: &mut BatchNorm2d<f64>, seed: u64) {
        let c = bn.config().num_features;
        bn.visit_mut(&mut |name, slot| match (name, slot) {
            ("weight", SlotMut::Param(p)) => p.value = random_tensor(&[c], seed) + 1.0,
            ("bias", SlotMut::Param(p)) => p.value = random_tensor(&[c], seed + 1),
            ("running_mean", SlotMut::Buffer(b)) => *b = random_tensor(&[c], seed + 2),
            ("running_var", SlotMut::Buffer(b)) => {
                *b = random_tensor(&[c], seed + 3).mapv(|v| v.abs() + 0.5)
            }
            _ => {}
        });
    }

    fn buffer(bn: &BatchNorm2d<f64>, key: &str) -> Tensor<f64> {
        let mut out = None;
        bn.visit(&mut |name, slot| {
            if let (true, Slot::Buffer(b)) = (name == key, slot) {
                out = Some(b.clone());
            }
        });
        out.unwrap()
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // (config, mode, shape, input scale, offset)
        let cases = [
            (
                BatchNorm2dConfig::new(3),
                Mode::Train,
                vec![4, 3, 3, 3],
                1.0,
                0.0,
            ),
            (
                BatchNorm2dConfig::new(2),
                Mode::Train,
                vec![1, 2, 2, 3],
                2.0,
                1.0,
            ),
            (
                BatchNorm2dConfig::new(2),
                Mode::Train,
                vec![2, 2, 1, 1],
                1.0,
                0.0,
            ),
            (
                BatchNorm2dConfig::new(3).affine(false),
                Mode::Train,
                vec![2, 3, 2, 2],
                1.0,
                -2.0,
            ),
            (
                BatchNorm2dConfig::new(3),
                Mode::Eval,
                vec![2, 3, 2, 2],
                1.5,
                0.0,
            ),
            (
                BatchNorm2dConfig::new(1),
                Mode::Eval,
                vec![1, 1, 1, 1],
                1.0,
                0.0,
            ),
            (
                BatchNorm2dConfig::new(4).affine(false),
                Mode::Eval,
                vec![1, 4, 2, 1],
                1.0,
                0.0,
            ),
            (
                BatchNorm2dConfig::new(3).track_running_stats(false),
                Mode::Eval,
                vec![3, 3, 2, 1],
                1.0,
                0.5,
            ),
            (
                BatchNorm2dConfig::new(2).eps(1e-3).momentum(0.3),
                Mode::Train,
                vec![3, 2, 2, 2],
                1.0,
                0.0,
            ),
        ];
        for (seed, (cfg, mode, shape, scale, offset)) in cases.into_iter().enumerate() {
            let mut bn = BatchNorm2d::new(cfg).unwrap();
            randomize(&mut bn, 10 * seed as u64);
            bn.set_mode(mode);
            let x = random_tensor(&shape, seed as u64) * scale + offset;
            let r = check_layer(&mut bn, &x, GradCheck::default());
            assert!(r.is_ok(), "case {seed}: {r:?}");
        }
    }

    #[test]
    fn train_statistics_and_running_update_by_hand() {
        // One channel, m = 4 values: mean 2.5, biased var 1.25, unbiased var 5/3.
        let x = from_vec(&[2, 1, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let mut bn = BatchNorm2d::new(BatchNorm2dConfig::new(1).eps(0.0)).unwrap();
        let y = bn.forward(&x).unwrap();
        let istd = 1.0 / 1.25f64.sqrt();
        for (got, x) in y.iter().zip([1.0, 2.0, 3.0, 4.0]) {
            assert!((got - (x - 2.5) * istd).abs() < 1e-15);
        }
        assert!((buffer(&bn, "running_mean")[0] - 0.25).abs() < 1e-15);
        assert!((buffer(&bn, "running_var")[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-15);
        assert_eq!(buffer(&bn, "num_batches_tracked").shape(), &[] as &[usize]);
        assert_eq!(buffer(&bn, "num_batches_tracked")[[]], 1.0);
        // Eval uses the running statistics and leaves them alone.
        bn.set_mode(Mode::Eval);
        let y = bn.forward(&x).unwrap();
        let (rm, rv) = (0.25, 0.9 + 0.1 * 5.0 / 3.0);
        assert!((y[[0, 0, 0, 0]] - (1.0 - rm) / f64::sqrt(rv)).abs() < 1e-15);
        assert_eq!(buffer(&bn, "num_batches_tracked")[[]], 1.0);
        assert!((buffer(&bn, "running_mean")[0] - 0.25).abs() < 1e-15);
    }

    #[test]
    fn cumulative_average_weighs_every_batch_equally() {
        // Batch statistics by their definition: per channel over N·H·W values, the mean and
        // the unbiased variance.
        let stats = |x: &Tensor<f64>| -> (Vec<f64>, Vec<f64>) {
            let c = x.shape()[1];
            let values = |ch: usize| -> Vec<f64> {
                x.index_axis(ndarray::Axis(1), ch).iter().copied().collect()
            };
            let mean: Vec<f64> = (0..c)
                .map(|ch| values(ch).iter().sum::<f64>() / values(ch).len() as f64)
                .collect();
            let var = (0..c)
                .map(|ch| {
                    let v = values(ch);
                    let ss: f64 = v.iter().map(|a| (a - mean[ch]).powi(2)).sum();
                    ss / (v.len() - 1) as f64
                })
                .collect();
            (mean, var)
        };
        let near = |got: f64, want: f64| {
            assert!(
                (got - want).abs() <= 1e-13 * (1.0 + want.abs()),
                "{got} vs {want}"
            );
        };
        let cfg = BatchNorm2dConfig::new(2)
            .momentum(0.7)
            .cumulative_average(true);
        let mut bn = BatchNorm2d::new(cfg).unwrap();
        assert_eq!(bn.describe(), "2 features, eps 0.00001, cumulative average");
        let batches: Vec<Tensor<f64>> = (0..3)
            .map(|i| random_tensor(&[3, 2, 2, 3], 40 + i) * (1.0 + i as f64) + i as f64)
            .collect();
        let (mut mean_sum, mut var_sum) = (vec![0.0; 2], vec![0.0; 2]);
        for (k, x) in batches.iter().enumerate() {
            bn.forward(x).unwrap();
            let (m, v) = stats(x);
            for ch in 0..2 {
                mean_sum[ch] += m[ch];
                var_sum[ch] += v[ch];
            }
            // After k + 1 batches: the plain mean of their statistics (momentum unused).
            let count = (k + 1) as f64;
            assert_eq!(buffer(&bn, "num_batches_tracked")[[]], count);
            for ch in 0..2 {
                near(buffer(&bn, "running_mean")[ch], mean_sum[ch] / count);
                near(buffer(&bn, "running_var")[ch], var_sum[ch] / count);
            }
        }
        // A loaded count carries on: after 4 tracked batches the fifth weighs 1/5.
        let mut bn = BatchNorm2d::new(cfg).unwrap();
        randomize(&mut bn, 7);
        bn.visit_mut(&mut |name, slot| {
            if let ("num_batches_tracked", SlotMut::Buffer(b)) = (name, slot) {
                b.fill(4.0);
            }
        });
        let before = buffer(&bn, "running_mean");
        bn.forward(&batches[0]).unwrap();
        let (m, _) = stats(&batches[0]);
        for ch in 0..2 {
            let want = (4.0 * before[ch] + m[ch]) / 5.0;
            near(buffer(&bn, "running_mean")[ch], want);
        }
    }

    /// Every parameter gradient and buffer, by name.
    fn state(bn: &BatchNorm2d<f64>) -> Vec<(String, Tensor<f64>)> {
        let mut out = Vec::new();
        bn.visit(&mut |name, slot| match slot {
            Slot::Param(p) => out.push((format!("{name}.grad"), p.grad.clone())),
            Slot::Buffer(b) => out.push((name.to_string(), b.clone())),
        });
        out
    }

    #[test]
    fn owned_borrowed_and_strided_inputs_agree_exactly() {
        // By value (kept, written over), by reference (copied) and a non-standard view of the
        // same numbers: the same outputs, gradients and running statistics, to the bit.
        let permuted = random_tensor(&[3, 5, 4, 3], 7) * 2.0 + 0.5;
        let strided = permuted.view().permuted_axes(IxDyn(&[0, 2, 1, 3]));
        let x = strided.as_standard_layout().into_owned();
        assert!(!strided.is_standard_layout());
        let g = random_tensor(&[3, 4, 5, 3], 8);
        for (cfg, mode) in [
            (BatchNorm2dConfig::new(4), Mode::Train),
            (BatchNorm2dConfig::new(4), Mode::Eval),
            (BatchNorm2dConfig::new(4).affine(false), Mode::Train),
            (
                BatchNorm2dConfig::new(4).track_running_stats(false),
                Mode::Eval,
            ),
        ] {
            let mut by_ref = BatchNorm2d::new(cfg).unwrap();
            randomize(&mut by_ref, 2);
            by_ref.set_mode(mode);
            let (mut by_value, mut by_view) = (by_ref.clone(), by_ref.clone());
            let y = by_ref.forward(&x).unwrap();
            assert_eq!(by_value.forward_owned(x.clone()).unwrap(), y);
            assert_eq!(by_view.forward(&strided.to_owned()).unwrap(), y);
            let dx = by_ref.backward(&g).unwrap();
            assert_eq!(by_value.backward_owned(g.clone()).unwrap(), dx);
            let g_strided = g.view().permuted_axes(IxDyn(&[0, 1, 3, 2]));
            let g_strided = g_strided.as_standard_layout().into_owned();
            let g_back = g_strided.view().permuted_axes(IxDyn(&[0, 1, 3, 2]));
            assert!(!g_back.is_standard_layout());
            assert_eq!(by_view.backward(&g_back.to_owned()).unwrap(), dx);
            assert_eq!(state(&by_value), state(&by_ref));
            assert_eq!(state(&by_view), state(&by_ref));
        }
    }

    #[test]
    fn backward_recomputes_what_forward_normalised() {
        // A second forward replaces the cache: backward then belongs to the second input.
        let (x1, x2) = (
            random_tensor(&[2, 3, 2, 2], 1),
            random_tensor(&[2, 3, 2, 2], 2),
        );
        let g = random_tensor(&[2, 3, 2, 2], 3);
        let mut twice = BatchNorm2d::<f64>::new(BatchNorm2dConfig::new(3)).unwrap();
        let mut once = twice.clone();
        twice.forward(&x1).unwrap();
        twice.forward(&x2).unwrap();
        once.forward(&x2).unwrap();
        assert_eq!(twice.backward(&g).unwrap(), once.backward(&g).unwrap());
        // A failed forward leaves nothing to differentiate.
        assert!(twice.forward(&random_tensor(&[1, 3, 1, 1], 0)).is_err());
        assert!(matches!(
            twice.backward(&g),
            Err(Error::BackwardBeforeForward { .. })
        ));
    }

    #[test]
    fn names_follow_pytorch() {
        let names = |cfg| {
            let mut v = Vec::new();
            BatchNorm2d::<f32>::new(cfg)
                .unwrap()
                .visit(&mut |n, s| v.push((n.to_string(), matches!(s, Slot::Param(_)))));
            v
        };
        let all = names(BatchNorm2dConfig::new(3));
        let keys: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            keys,
            [
                "weight",
                "bias",
                "running_mean",
                "running_var",
                "num_batches_tracked"
            ]
        );
        assert_eq!(all.iter().filter(|(_, p)| *p).count(), 2);
        assert_eq!(names(BatchNorm2dConfig::new(3).affine(false)).len(), 3);
        assert_eq!(
            names(BatchNorm2dConfig::new(3).track_running_stats(false)).len(),
            2
        );
        let bn = BatchNorm2d::<f32>::new(BatchNorm2dConfig::new(3)).unwrap();
        assert_eq!(bn.num_params(), 6);
        assert_eq!(bn.describe(), "3 features, eps 0.00001, momentum 0.1");
    }

    #[test]
    fn without_running_stats_eval_uses_the_batch() {
        let x = random_tensor(&[3, 2, 2, 2], 5) * 3.0 + 1.0;
        let mut bn =
            BatchNorm2d::<f64>::new(BatchNorm2dConfig::new(2).track_running_stats(false)).unwrap();
        let train = bn.forward(&x).unwrap();
        bn.set_mode(Mode::Eval);
        assert_eq!(bn.forward(&x).unwrap(), train);
    }

    #[test]
    fn f32_agrees_with_f64() {
        for mode in [Mode::Train, Mode::Eval] {
            let x = random_tensor(&[4, 3, 3, 3], 3) * 2.0 + 1.0;
            let mut a = BatchNorm2d::<f64>::new(BatchNorm2dConfig::new(3)).unwrap();
            randomize(&mut a, 1);
            let mut b = BatchNorm2d::<f32>::new(BatchNorm2dConfig::new(3)).unwrap();
            let mut values = Vec::new();
            a.visit(&mut |_, s| match s {
                Slot::Param(p) => values.push(p.value.mapv(|v| v as f32)),
                Slot::Buffer(t) => values.push(t.mapv(|v| v as f32)),
            });
            let mut it = values.into_iter();
            b.visit_mut(&mut |_, s| match s {
                SlotMut::Param(p) => p.value = it.next().unwrap(),
                SlotMut::Buffer(t) => *t = it.next().unwrap(),
            });
            a.set_mode(mode);
            b.set_mode(mode);
            let grad = |shape: &[usize]| random_tensor(shape, 4);
            assert_f32_matches_f64(&mut a, &mut b, &x, grad, 1e-4);
        }
    }

    #[test]
    fn errors() {
        for cfg in [
            BatchNorm2dConfig::new(0),
            BatchNorm2dConfig::new(3).eps(-1.0),
            BatchNorm2dConfig::new(3).eps(f64::NAN),
            BatchNorm2dConfig::new(3).momentum(1.5),
        ] {
            assert!(matches!(
                BatchNorm2d::<f64>::new(cfg),
                Err(Error::InvalidConfig { .. })
            ));
        }
        let mut bn = BatchNorm2d::<f64>::new(BatchNorm2dConfig::new(3)).unwrap();
        assert!(matches!(
            bn.backward(&random_tensor(&[2, 3, 2, 2], 0)),
            Err(Error::BackwardBeforeForward { .. })
        ));
        let err = bn.forward(&random_tensor(&[2, 4, 2, 2], 0)).unwrap_err();
        assert!(err.to_string().contains("BatchNorm2d(3)"), "{err}");
        assert!(bn.forward(&random_tensor(&[2, 3, 4], 0)).is_err());
        // One value per channel: impossible in training, fine in eval.
        let single = random_tensor(&[1, 3, 1, 1], 0);
        assert!(matches!(
            bn.forward(&single),
            Err(Error::ShapeMismatch { .. })
        ));
        assert_eq!(buffer(&bn, "num_batches_tracked")[[]], 0.0);
        bn.set_mode(Mode::Eval);
        bn.forward(&single).unwrap();
        assert!(matches!(
            bn.backward(&random_tensor(&[1, 3, 1, 2], 0)),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn matches_pytorch() {
        for i in 0..5 {
            let file = format!("batch_norm2d_{i:03}");
            let (cfg, t) = parity(&file);
            let c = cfg["num_features"].as_u64().unwrap() as usize;
            let config = BatchNorm2dConfig::new(c)
                .eps(cfg["eps"].as_f64().unwrap())
                .momentum(cfg["momentum"].as_f64().unwrap())
                .affine(cfg["affine"].as_bool().unwrap())
                .track_running_stats(cfg["track_running_stats"].as_bool().unwrap());
            let mut bn = BatchNorm2d::new(config).unwrap();
            bn.visit_mut(&mut |name, slot| match slot {
                SlotMut::Param(p) => p.value = t[name].clone(),
                SlotMut::Buffer(b) if name != "num_batches_tracked" => *b = t[name].clone(),
                SlotMut::Buffer(_) => {}
            });
            let train = cfg["mode"] == "train";
            bn.set_mode(if train { Mode::Train } else { Mode::Eval });
            assert_close(&file, &bn.forward(&t["input"]).unwrap(), &t["output"]);
            assert_close(
                &file,
                &bn.backward(&t["grad_output"]).unwrap(),
                &t["grad_input"],
            );
            let mut grads = Vec::new();
            bn.visit(&mut |name, slot| {
                if let Slot::Param(p) = slot {
                    grads.push((format!("grad_{name}"), p.grad.clone()));
                }
            });
            assert_eq!(grads.len(), 2);
            for (key, g) in &grads {
                assert_close(&format!("{file} {key}"), g, &t[key]);
            }
            assert_close(
                &file,
                &buffer(&bn, "running_mean"),
                &t["running_mean_after"],
            );
            assert_close(&file, &buffer(&bn, "running_var"), &t["running_var_after"]);
            assert_eq!(
                buffer(&bn, "num_batches_tracked")[[]],
                if train { 1.0 } else { 0.0 }
            );
        }
    }
}
