//! The training loop: epochs over a [`DataLoader`], evaluation, NaN detection, learning-rate
//! schedules and atomic checkpoints that resume a run exactly.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::collective::Collective;
use crate::data::{DataLoader, Dataset};
use crate::error::{Error, Result};
use crate::io::{
    apply_state_dict, check_state_dict, check_unique_names, decode_tensors, encode_tensors,
    state_dict, write_atomic,
};
use crate::layer::{Layer, Mode, Slot};
use crate::loss::CrossEntropyLoss;
use crate::optim::{LrSchedule, Optimizer};
use crate::progress::{Progress, ProgressStyle};
use crate::rng::Rng64;
use crate::tensor::{contiguous, Float, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What one training epoch did.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochStats {
    /// The epoch just finished, 1-based.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub loss: f64,
    /// Training accuracy (top-1) over the epoch, measured on the fly in training mode.
    pub accuracy: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Images seen.
    pub images: usize,
    /// Wall time in seconds.
    pub seconds: f64,
}

impl EpochStats {
    /// Training throughput.
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }
}

/// The result of evaluating a model on a labelled set.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalStats {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Samples whose highest-scoring class is the label.
    pub correct: usize,
    /// Samples whose label is among the five highest-scoring classes.
    pub correct_top5: usize,
    /// Samples evaluated.
    pub total: usize,
    /// `confusion[label][prediction]` counts; empty when nothing was evaluated, or when the
    /// model scores more than 16384 classes (the `classes^2` counters would exceed the
    /// tensor size limit, [`crate::tensor::MAX_ELEMENTS`]).
    pub confusion: Vec<Vec<usize>>,
    /// Wall time in seconds.
    pub seconds: f64,
}

impl EvalStats {
    /// Top-1 accuracy in `[0, 1]`.
    pub fn top1(&self) -> f64 {
        self.correct as f64 / self.total.max(1) as f64
    }

    /// Top-5 accuracy in `[0, 1]`.
    pub fn top5(&self) -> f64 {
        self.correct_top5 as f64 / self.total.max(1) as f64
    }
}

/// Trains a classifier with cross-entropy.
///
/// Every random choice of a run (batch order, augmentation, dropout) derives from seeds, so a
/// run is reproducible for a given seed and thread count, and [`Trainer::save_checkpoint`] +
/// [`Trainer::load_checkpoint`] continue it as if it had never stopped.
///
/// Learning to tell 8x8 images lit on the left from images lit on the right:
///
/// ```
/// use convnet::data::{DataLoader, ImageSet, LoaderConfig};
/// use convnet::optim::{Sgd, SgdConfig};
/// use convnet::prelude::*;
/// use convnet::progress::ProgressStyle;
/// use convnet::train::Trainer;
/// # fn main() -> convnet::Result<()> {
/// convnet::init::manual_seed(3);
/// // 64 images: class 0 has a bright column in the left half, class 1 in the right half.
/// let (mut pixels, mut labels) = (Vec::new(), Vec::new());
/// for i in 0..64 {
///     let class = i % 2;
///     let column = (i / 2) % 4 + 4 * class;
///     pixels.extend((0..64).map(|p| if p % 8 == column { 255u8 } else { 0 }));
///     labels.push(class as u8);
/// }
/// let data = ImageSet::new(pixels, labels, 8, 8, 2)?;
/// let loader = DataLoader::new(&data, LoaderConfig::new(16).shuffle(7))?;
///
/// let model = Sequential::<f32>::new()
///     .add(Conv2d::new(Conv2dConfig::new(1, 4, 3).padding(1))?)
///     .add(ReLU::new())
///     .add(MaxPool2d::new(MaxPool2dConfig::new(2))?)
///     .add(Flatten::new(FlattenConfig::new())?)
///     .add(Linear::new(LinearConfig::new(4 * 4 * 4, 2))?);
/// let mut trainer = Trainer::new(model, Sgd::new(SgdConfig::new(0.1).momentum(0.9))?)
///     .with_progress(ProgressStyle::Off);
/// for _ in 0..10 {
///     trainer.train_epoch(&loader)?;
/// }
/// let eval = trainer.evaluate(&loader)?;
/// assert_eq!(trainer.epoch(), 10);
/// assert_eq!(eval.top1(), 1.0, "{eval:?}");
/// # Ok(())
/// # }
/// ```
pub struct Trainer<T: Float, M: Layer<T>> {
    /// The model being trained.
    pub model: M,
    optimizer: Box<dyn Optimizer<T>>,
    loss: CrossEntropyLoss,
    schedule: Option<Box<dyn LrSchedule>>,
    base_lr: f64,
    epoch: usize,
    step: usize,
    progress: ProgressStyle,
}

impl<T: Float, M: Layer<T>> Trainer<T, M> {
    /// A trainer for `model` with `optimizer`; the optimizer's current learning rate is the
    /// base rate that schedules scale.
    pub fn new(model: M, optimizer: impl Optimizer<T> + 'static) -> Self {
        let base_lr = optimizer.lr();
        Trainer {
            model,
            optimizer: Box::new(optimizer),
            loss: CrossEntropyLoss::new(),
            schedule: None,
            base_lr,
            epoch: 0,
            step: 0,
            progress: ProgressStyle::Auto,
        }
    }

    /// Sets the learning rate per epoch from a schedule.
    pub fn with_schedule(mut self, schedule: impl LrSchedule + 'static) -> Self {
        self.schedule = Some(Box::new(schedule));
        self
    }

    /// Uses a cross-entropy with label smoothing.
    pub fn with_loss(mut self, loss: CrossEntropyLoss) -> Self {
        self.loss = loss;
        self
    }

    /// How progress is shown (default: a bar on a terminal, lines otherwise).
    pub fn with_progress(mut self, style: ProgressStyle) -> Self {
        self.progress = style;
        self
    }

    /// Epochs completed so far.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &dyn Optimizer<T> {
        self.optimizer.as_ref()
    }

    /// This process's rank in a distributed run (0 for a single process).
    pub fn rank(&self) -> usize {
        self.model.collective().map_or(0, |g| g.rank())
    }

    /// The number of processes training the model (1 unless it is wrapped for data-parallel
    /// training, e.g. by `convnet::distributed::DataParallel`).
    pub fn world_size(&self) -> usize {
        self.model.collective().map_or(1, |g| g.size())
    }

    /// Whether this process prints and writes files: process 0 of a distributed run, or the
    /// only process.
    pub fn is_main_process(&self) -> bool {
        self.rank() == 0
    }

    /// The learning rate the next epoch will use.
    pub fn next_lr(&self) -> f64 {
        match &self.schedule {
            Some(s) => s.lr_at(self.base_lr, self.epoch),
            None => self.base_lr,
        }
    }

    /// Trains one epoch (epoch number [`Trainer::epoch`] of the loader's schedule of batches).
    /// A loss that is NaN or infinite stops training with [`Error::NonFinite`] naming the step.
    ///
    /// In a distributed run (the model has a [`Layer::collective`] group) every process takes
    /// its share of each batch of `loader` (whose batch size is the global batch), the loss
    /// and accuracy are those of the global batch, and only process 0 shows progress.
    pub fn train_epoch<D: Dataset>(&mut self, loader: &DataLoader<'_, D>) -> Result<EpochStats> {
        let group = self.model.collective();
        let sharded = shard_for(loader, group.as_deref())?;
        let loader = sharded.as_ref().unwrap_or(loader);
        let lr = self.next_lr();
        self.optimizer.set_lr(lr);
        self.model.set_mode(Mode::Train);
        let label = format!("epoch {}", self.epoch + 1);
        let style = progress_style(self.progress, group.as_deref());
        let mut progress = Progress::new(&label, loader.num_batches(), style);
        let (mut loss_sum, mut batches, mut correct, mut images) = (0.0, 0usize, 0usize, 0usize);
        // The loader prepares batch i + 1 on a helper thread while batch i trains.
        let mut i = 0;
        let epoch = self.epoch;
        let result = loader.for_each_batch::<T, Error>(epoch, |batch| {
            let logits = self.model.forward(&batch.images)?;
            let n = batch.labels.len();
            let (loss, grad) = if n == 0 {
                // An empty share of an uneven last batch: nothing to learn from, but the
                // process still joins the gradient average in `backward`.
                (0.0, Tensor::zeros(logits.raw_dim()))
            } else {
                let (loss, grad) = self.loss.forward(&logits, &batch.labels)?;
                (loss.as_f64(), grad)
            };
            let mut hits = top_k_hits(&logits, &batch.labels, 1);
            let (mut loss, mut n) = (loss, n);
            if let Some(g) = &group {
                // The global batch's mean loss, sample count and hits; a non-finite loss on
                // any process stops every process at the same step.
                let mut m = [
                    if loss.is_finite() {
                        loss * n as f64
                    } else {
                        0.0
                    },
                    n as f64,
                    hits as f64,
                    f64::from(u8::from(!loss.is_finite())),
                ];
                g.all_reduce_sum(&mut m)?;
                n = m[1] as usize;
                hits = m[2] as usize;
                loss = if m[3] > 0.0 {
                    f64::NAN
                } else {
                    m[0] / m[1].max(1.0)
                };
            }
            if !loss.is_finite() {
                return Err(Error::NonFinite(format!(
                    "training loss is {loss} at epoch {}, batch {} (global step {}); \
                     lower the learning rate or check the data",
                    epoch + 1,
                    i + 1,
                    self.step + 1
                )));
            }
            self.model.zero_grad();
            self.model.backward_params(&grad)?;
            self.optimizer.step(&mut self.model)?;
            self.step += 1;
            i += 1;
            loss_sum += loss;
            batches += 1;
            correct += hits;
            images += n;
            let rate = images as f64 / progress.elapsed().max(1e-9);
            progress.advance(
                1,
                &format!(
                    "loss {:.4} acc {:.2}% {:.0} img/s",
                    loss_sum / batches as f64,
                    100.0 * correct as f64 / images as f64,
                    rate
                ),
            );
            Ok(())
        });
        if let Err(e) = result {
            progress.finish();
            return Err(e);
        }
        progress.finish();
        self.epoch += 1;
        Ok(EpochStats {
            epoch: self.epoch,
            loss: loss_sum / batches.max(1) as f64,
            accuracy: correct as f64 / images.max(1) as f64,
            lr,
            images,
            seconds: progress.elapsed(),
        })
    }

    /// Evaluates the model (its inference path, [`Layer::infer`]) on every sample of
    /// `loader`'s first epoch order. The model's mode and state are left as they are.
    pub fn evaluate<D: Dataset>(&self, loader: &DataLoader<'_, D>) -> Result<EvalStats> {
        evaluate(&self.model, loader, self.progress)
    }

    /// Saves model, optimizer state, epoch, step and the model's random generators to a
    /// safetensors file, atomically (temp file, fsync, rename).
    ///
    /// In a distributed run only process 0 writes (the replicas are identical); every process
    /// returns its result, so a failed write stops them all.
    pub fn save_checkpoint(&mut self, path: &Path) -> Result<()> {
        let Some(group) = self.model.collective() else {
            return self.write_checkpoint(path);
        };
        let result = if group.rank() == 0 {
            self.write_checkpoint(path)
        } else {
            Ok(())
        };
        let mut failed = [f64::from(u8::from(result.is_err()))];
        group.all_reduce_sum(&mut failed)?;
        match result {
            Err(e) => Err(e),
            Ok(()) if failed[0] > 0.0 => Err(Error::Distributed(format!(
                "process 0 could not write the checkpoint {}",
                path.display()
            ))),
            Ok(()) => Ok(()),
        }
    }

    fn write_checkpoint(&mut self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Tensor<T>)> = state_dict(&self.model)
            .into_iter()
            .map(|(name, t)| (format!("model.{name}"), t))
            .collect();
        tensors.extend(
            self.optimizer
                .state()
                .into_iter()
                .map(|(name, t)| (format!("optimizer.{name}"), t)),
        );
        check_unique_names(
            tensors.iter().map(|(n, _)| n.as_str()),
            &path.display().to_string(),
        )?;
        let mut rngs = String::new();
        self.model.visit_rngs_mut(&mut |name, rng| {
            let s = rng.state();
            rngs.push_str(&format!("{name} {} {} {} {}\n", s[0], s[1], s[2], s[3]));
        });
        let mut meta = HashMap::new();
        meta.insert("convnet_checkpoint".to_string(), "1".to_string());
        meta.insert("epoch".to_string(), self.epoch.to_string());
        meta.insert("step".to_string(), self.step.to_string());
        meta.insert("base_lr".to_string(), format!("{:e}", self.base_lr));
        meta.insert("optimizer".to_string(), self.optimizer.kind().to_string());
        meta.insert("rngs".to_string(), rngs);
        write_atomic(path, &encode_tensors(&tensors, Some(meta))?)
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`] into this trainer (whose
    /// model and optimizer must be of the same architecture and kind).
    ///
    /// All or nothing: the model's tensors, the optimizer state, the generators, the epoch and
    /// step counters are all checked before any of them is changed, so a failed load leaves
    /// the trainer as it was. Errors name the file.
    ///
    /// In a distributed run process 0 reads the file and sends it to the others (so it need
    /// not be on a shared disk), and any number of processes can resume any checkpoint.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<()> {
        let source = path.display().to_string();
        let read = || crate::io::read_regular_file(path, "cannot read");
        let bytes = match self.model.collective() {
            None => read()?,
            Some(group) => {
                // One status byte (1: the file follows; 0: process 0's error text follows).
                let mut message = Vec::new();
                if group.rank() == 0 {
                    match read() {
                        Ok(bytes) => {
                            message.push(1);
                            message.extend(bytes);
                        }
                        Err(e) => {
                            message.push(0);
                            message.extend(e.to_string().into_bytes());
                        }
                    }
                }
                let mut message = group.broadcast_bytes(message, 0)?;
                match message.first() {
                    Some(1) => message.split_off(1),
                    _ => {
                        return Err(Error::File {
                            path: path.to_path_buf(),
                            message: format!(
                                "process 0 could not read it: {}",
                                String::from_utf8_lossy(message.get(1..).unwrap_or(&[]))
                            ),
                        })
                    }
                }
            }
        };
        self.load_checkpoint_from_bytes(&bytes, &source)
    }

    /// [`Trainer::load_checkpoint`] on bytes in memory; `source` labels errors.
    pub fn load_checkpoint_from_bytes(&mut self, bytes: &[u8], source: &str) -> Result<()> {
        let source = source.to_string();
        let file_err = |message: String| Error::File {
            path: PathBuf::from(source.clone()),
            message,
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| file_err(format!("not a valid safetensors file: {e}")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("convnet_checkpoint").map(String::as_str) != Some("1") {
            return Err(file_err(
                "not a convnet checkpoint (no convnet_checkpoint metadata)".into(),
            ));
        }
        let kind = meta.get("optimizer").cloned().unwrap_or_default();
        if kind != self.optimizer.kind() {
            return Err(file_err(format!(
                "checkpoint was written by a {kind} optimizer, this trainer uses {}",
                self.optimizer.kind()
            )));
        }
        let number = |key: &str| -> Result<usize> {
            let v: u64 = meta
                .get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| file_err(format!("metadata `{key}` missing or not a number")))?;
            if v > MAX_COUNTER {
                return Err(file_err(format!(
                    "metadata `{key}` = {v} is not a plausible counter (more than 2^53)"
                )));
            }
            usize::try_from(v).map_err(|_| file_err(format!("metadata `{key}` = {v} too large")))
        };
        let (epoch, step) = (number("epoch")?, number("step")?);
        let base_lr: f64 = meta
            .get("base_lr")
            .and_then(|v| v.parse().ok())
            .filter(|lr: &f64| lr.is_finite() && *lr >= 0.0)
            .ok_or_else(|| {
                file_err("metadata `base_lr` missing or not a finite rate >= 0".into())
            })?;
        let mut rngs: HashMap<String, Rng64> = HashMap::new();
        for line in meta.get("rngs").map(String::as_str).unwrap_or("").lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            let words: Option<Vec<u64>> = parts
                .get(1..)
                .map(|w| w.iter().filter_map(|x| x.parse().ok()).collect());
            match (parts.first(), words.as_deref()) {
                (Some(name), Some(&[a, b, c, d])) => {
                    if rngs
                        .insert(name.to_string(), Rng64::from_state([a, b, c, d]))
                        .is_some()
                    {
                        return Err(file_err(format!("generator `{name}` saved twice")));
                    }
                }
                _ => return Err(file_err(format!("malformed generator state line `{line}`"))),
            }
        }
        let mut model_tensors = Vec::new();
        let mut optim_tensors = Vec::new();
        for (name, t) in decode_tensors::<T>(bytes, &source)? {
            if let Some(n) = name.strip_prefix("model.") {
                model_tensors.push((n.to_string(), t));
            } else if let Some(n) = name.strip_prefix("optimizer.") {
                optim_tensors.push((n.to_string(), t));
            } else {
                return Err(file_err(format!(
                    "unexpected tensor `{name}` (neither model. nor optimizer.)"
                )));
            }
        }
        // All or nothing: check everything before changing anything.
        let model_state = check_state_dict(&self.model, model_tensors, &source)?;
        self.check_optimizer_state(&optim_tensors, &source)?;
        let mut rng_names = Vec::new();
        self.model
            .visit_rngs_mut(&mut |name, _| rng_names.push(name.to_string()));
        if let Some(name) = rng_names.iter().find(|n| !rngs.contains_key(*n)) {
            return Err(file_err(format!(
                "no saved state for the generator of `{name}`"
            )));
        }
        if let Some(name) = rngs.keys().find(|n| !rng_names.contains(n)) {
            return Err(file_err(format!(
                "saved generator `{name}` belongs to no layer of this model"
            )));
        }
        // The optimizer replaces its state only if the whole state parses, so it goes first;
        // nothing after it can fail.
        self.optimizer
            .load_state(optim_tensors)
            .map_err(|e| file_err(format!("optimizer state: {e}")))?;
        apply_state_dict(&mut self.model, model_state);
        self.model.visit_rngs_mut(&mut |name, rng| {
            if let Some(saved) = rngs.get(name) {
                *rng = saved.clone();
            }
        });
        self.epoch = epoch;
        self.step = step;
        self.base_lr = base_lr;
        Ok(())
    }

    /// Every optimizer state entry `<param>.<entry>` must belong to a trainable parameter of
    /// the model and have its shape (or be a 0-d `step` counter).
    fn check_optimizer_state(&self, entries: &[(String, Tensor<T>)], source: &str) -> Result<()> {
        let mut shapes: HashMap<String, Vec<usize>> = HashMap::new();
        self.model.visit(&mut |name, slot| {
            if let Slot::Param(p) = slot {
                shapes.insert(name.to_string(), p.value.shape().to_vec());
            }
        });
        for (entry, t) in entries {
            let bad = |why: String| Error::File {
                path: PathBuf::from(source),
                message: format!("optimizer state `{entry}`: {why}"),
            };
            let (param, kind) = entry
                .rsplit_once('.')
                .ok_or_else(|| bad("not named `<param>.<entry>`".into()))?;
            let shape = shapes
                .get(param)
                .ok_or_else(|| bad(format!("the model has no parameter `{param}`")))?;
            let want: &[usize] = if kind == "step" { &[] } else { shape };
            if t.shape() != want {
                return Err(bad(format!("shape {:?}, expected {want:?}", t.shape())));
            }
        }
        Ok(())
    }
}

/// The largest epoch or step counter a checkpoint may hold: 2^53, the largest integer every
/// counter (also the optimizer's `f64` step) represents exactly. Anything above is corrupt.
pub const MAX_COUNTER: u64 = 1 << 53;

/// The loader a process of `group` draws from: `loader` sharded by the group (`None` when
/// there is no group). A loader already sharded must be sharded the group's way.
fn shard_for<'a, D: Dataset>(
    loader: &DataLoader<'a, D>,
    group: Option<&dyn Collective>,
) -> Result<Option<DataLoader<'a, D>>> {
    let Some(g) = group else { return Ok(None) };
    match loader.config().shard {
        Some(s) if s != (g.rank(), g.size()) => Err(Error::config(
            "Trainer",
            format!(
                "the loader is sharded as {s:?} (rank, world) but this is process {} of {}",
                g.rank(),
                g.size()
            ),
        )),
        _ => Ok(Some(loader.sharded(g.rank(), g.size())?)),
    }
}

/// Progress shows on process 0 only.
fn progress_style(style: ProgressStyle, group: Option<&dyn Collective>) -> ProgressStyle {
    match group {
        Some(g) if g.rank() != 0 => ProgressStyle::Off,
        _ => style,
    }
}

/// Evaluates `model` over every batch of `loader`'s epoch 0 with [`Layer::infer`] (evaluation
/// behaviour whatever the model's mode; nothing in the model changes).
///
/// In a distributed run each process evaluates its share of the samples and the statistics
/// are summed over the processes (every process returns the totals).
pub fn evaluate<T: Float, D: Dataset>(
    model: &dyn Layer<T>,
    loader: &DataLoader<'_, D>,
    style: ProgressStyle,
) -> Result<EvalStats> {
    let group: Option<Arc<dyn Collective>> = model.collective();
    let sharded = shard_for(loader, group.as_deref())?;
    let loader = sharded.as_ref().unwrap_or(loader);
    let loss_fn = CrossEntropyLoss::new();
    let style = match progress_style(style, group.as_deref()) {
        s @ (ProgressStyle::Off | ProgressStyle::Callback(_)) => s,
        _ => ProgressStyle::BarOnly,
    };
    let mut progress = Progress::new("evaluate", loader.num_batches(), style);
    let mut stats = EvalStats {
        loss: 0.0,
        correct: 0,
        correct_top5: 0,
        total: 0,
        confusion: Vec::new(),
        seconds: 0.0,
    };
    let mut confusion_too_large = false;
    for batch in loader.epoch::<T>(0) {
        let batch = batch?;
        if batch.labels.is_empty() {
            progress.advance(1, "");
            continue;
        }
        let logits = model.infer(&batch.images)?;
        let (loss, _) = loss_fn.forward(&logits, &batch.labels)?;
        // `loss_fn.forward` accepted the logits, so they are `[N, C]`.
        let classes = logits.shape().get(1).copied().unwrap_or(0);
        if stats.confusion.is_empty() && !confusion_too_large {
            // classes^2 counters: a model scoring 2^24 classes (a Linear that fits the size
            // limit) would ask for 2^48 of them and abort. Past the tensor size limit
            // (16384 classes) the matrix is left empty.
            if classes
                .checked_mul(classes)
                .is_some_and(|n| n <= crate::tensor::MAX_ELEMENTS)
            {
                stats.confusion = vec![vec![0; classes]; classes];
            } else {
                confusion_too_large = true;
            }
        }
        for (&label, pred) in batch.labels.iter().zip(predictions(&logits)) {
            // Out-of-range labels (or a model whose class count changes between batches)
            // are left out of the matrix rather than indexed.
            if let Some(cell) = stats.confusion.get_mut(label).and_then(|r| r.get_mut(pred)) {
                *cell += 1;
            }
        }
        stats.loss += loss.as_f64() * batch.labels.len() as f64;
        stats.correct += top_k_hits(&logits, &batch.labels, 1);
        stats.correct_top5 += top_k_hits(&logits, &batch.labels, 5);
        stats.total += batch.labels.len();
        progress.advance(1, "");
    }
    progress.finish();
    if let Some(g) = &group {
        reduce_eval(g.as_ref(), &mut stats)?;
    }
    stats.loss /= stats.total.max(1) as f64;
    stats.seconds = progress.elapsed();
    Ok(stats)
}

/// Sums the evaluation counts (and the confusion matrix) over the processes.
fn reduce_eval(group: &dyn Collective, stats: &mut EvalStats) -> Result<()> {
    let classes = stats.confusion.len();
    let mut m = [
        stats.loss,
        stats.correct as f64,
        stats.correct_top5 as f64,
        stats.total as f64,
        classes as f64,
        f64::from(u8::from(classes > 0)),
    ];
    group.all_reduce_sum(&mut m)?;
    // Processes that saw a batch agree on the class count; one that saw none has 0.
    let classes = if m[5] > 0.0 {
        (m[4] / m[5]).round() as usize
    } else {
        0
    };
    if stats.confusion.is_empty() {
        stats.confusion = vec![vec![0; classes]; classes];
    }
    if stats.confusion.len() != classes {
        return Err(Error::Distributed(format!(
            "processes disagree on the number of classes ({} here)",
            stats.confusion.len()
        )));
    }
    let mut cells: Vec<f64> = stats.confusion.concat().iter().map(|&c| c as f64).collect();
    group.all_reduce_sum(&mut cells)?;
    for (row, chunk) in stats.confusion.iter_mut().zip(cells.chunks(classes.max(1))) {
        for (cell, &v) in row.iter_mut().zip(chunk) {
            *cell = v as usize;
        }
    }
    stats.loss = m[0];
    stats.correct = m[1] as usize;
    stats.correct_top5 = m[2] as usize;
    stats.total = m[3] as usize;
    Ok(())
}

/// The highest-scoring class of each row of `[N, C]` logits: the first maximum, and the
/// first NaN if the row holds one (as `torch.argmax`, which treats NaN as the largest value).
pub fn predictions<T: Float>(logits: &Tensor<T>) -> Vec<usize> {
    let classes = logits.shape().get(1).copied().unwrap_or(1).max(1);
    let data = contiguous(logits);
    data.chunks(classes)
        .map(|row| {
            let mut best = 0;
            for (c, &v) in row.iter().enumerate() {
                let b = row.get(best).copied().unwrap_or(v);
                if b.is_nan() {
                    break;
                }
                if v > b || v.is_nan() {
                    best = c;
                }
            }
            best
        })
        .collect()
}

/// How many rows of `[N, C]` logits rank their label among the top `k` classes.
///
/// A hit needs the label's logit to be strictly greater than all but at most `k - 1` of the
/// others: ties count as misses (a model with constant logits scores 0, not 100%), and so
/// does any row holding a NaN. Labels out of range are misses.
pub fn top_k_hits<T: Float>(logits: &Tensor<T>, labels: &[usize], k: usize) -> usize {
    let classes = logits.shape().get(1).copied().unwrap_or(1).max(1);
    let data = contiguous(logits);
    data.chunks(classes)
        .zip(labels)
        .filter(|(row, &label)| {
            let Some(&mine) = row.get(label) else {
                return false;
            };
            if row.iter().any(|v| v.is_nan()) {
                return false;
            }
            let rivals = row
                .iter()
                .enumerate()
                .filter(|&(c, &v)| c != label && v >= mine)
                .count();
            rivals < k
        })
        .count()
}
