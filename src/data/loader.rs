//! Batching: seeded shuffling, drop-last, normalisation, random-shift augmentation and
//! sharding over the processes of a distributed run.
//!
//! Everything random about an epoch is seeded: its order by `(seed, epoch)`, each sample's
//! shift by `(seed, epoch, sample index)`. So epoch `e` is the same whether a run reached it
//! directly or resumed from a checkpoint, is independent of the thread count, and a sample is
//! augmented the same way whichever process of a distributed run draws it.
//!
//! Sharding (`DistributedSampler` semantics): with `shard(rank, world)`, every process draws
//! the same permutation and takes the positions `p` of each global batch with
//! `p % world == rank`, so the union of the processes' batches at a step is exactly the
//! global batch of a single process, and every process runs the same number of steps (a
//! process whose share of an uneven last batch is empty gets an empty batch).
//!
//! The samples of a batch are read (for an `ImageFolder`: decoded and transformed) in parallel
//! on the crate's thread pool, each into its own slot of the batch; since every random choice
//! is seeded per sample, the batches are the same bit for bit with 1 thread or many.
//! [`DataLoader::for_each_batch`] also prepares the next batch while the caller works on the
//! current one.

use super::Dataset;
use crate::error::{Error, Result};
use crate::parallel::prelude::*;
use crate::rng::Rng64;
use crate::tensor::{Float, Tensor};
use ndarray::IxDyn;
use std::ops::Range;

/// How a [`DataLoader`] forms batches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Samples per batch (at least 1).
    pub batch_size: usize,
    /// Visit the samples in a new random order every epoch.
    pub shuffle: bool,
    /// Drop a final batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Seed of the shuffling and augmentation.
    pub seed: u64,
    /// `(mean, std)`: each value becomes `(x - mean) / std`.
    pub normalize: Option<(f64, f64)>,
    /// Shift each image by up to this many pixels in each direction (zero fill), 0 for none.
    pub max_shift: usize,
    /// `(rank, world)`: this process's share of every batch in a run of `world` processes
    /// (`batch_size` is then the global batch). `None`: the whole batch.
    pub shard: Option<(usize, usize)>,
}

impl LoaderConfig {
    /// Batches of `batch_size`, in order, no normalisation or augmentation.
    pub fn new(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            seed: 0,
            normalize: None,
            max_shift: 0,
            shard: None,
        }
    }

    /// Shuffle every epoch with this seed.
    pub fn shuffle(mut self, seed: u64) -> Self {
        self.shuffle = true;
        self.seed = seed;
        self
    }

    /// Drop the last incomplete batch.
    pub fn drop_last(mut self, drop_last: bool) -> Self {
        self.drop_last = drop_last;
        self
    }

    /// Normalise with `(x - mean) / std`.
    pub fn normalize(mut self, mean: f64, std: f64) -> Self {
        self.normalize = Some((mean, std));
        self
    }

    /// Random shifts of up to `pixels` in each direction.
    pub fn max_shift(mut self, pixels: usize) -> Self {
        self.max_shift = pixels;
        self
    }

    /// Process `rank`'s share of every batch in a run of `world` processes; `batch_size` is
    /// the global batch. [`DataLoader::new`] refuses `rank >= world`.
    pub fn shard(mut self, rank: usize, world: usize) -> Self {
        self.shard = Some((rank, world));
        self
    }
}

/// Cuts a [`Dataset`] into batches, epoch after epoch.
pub struct DataLoader<'a, D: Dataset> {
    data: &'a D,
    config: LoaderConfig,
}

/// One batch: images `[B, C, H, W]` and their labels.
#[derive(Clone, Debug)]
pub struct Batch<T: Float> {
    /// The samples, stacked on a new first axis.
    pub images: Tensor<T>,
    /// One label per sample.
    pub labels: Vec<usize>,
}

impl<'a, D: Dataset> DataLoader<'a, D> {
    /// A loader over `data`; fails on a zero batch size, a non-positive std, or a dataset
    /// that gives no batch (empty, or smaller than the batch size with `drop_last`).
    pub fn new(data: &'a D, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::config("DataLoader", "batch size must be at least 1"));
        }
        // A sample of zero elements (or too many) cannot be batched: refuse it here rather
        // than panic while cutting images into planes.
        let shape = data.sample_shape();
        let per = crate::tensor::checked_numel("DataLoader (one sample)", &shape)?;
        if per == 0 {
            return Err(Error::config(
                "DataLoader",
                format!("samples of shape {shape:?} hold no values"),
            ));
        }
        // The largest batch must fit the tensor size limit (its buffer is allocated per batch).
        let largest = config.batch_size.min(data.len());
        let mut batch_shape = vec![largest];
        batch_shape.extend_from_slice(&shape);
        crate::tensor::checked_numel("DataLoader (one batch)", &batch_shape)?;
        if let Some((rank, world)) = config.shard {
            if world == 0 || rank >= world {
                return Err(Error::config(
                    "DataLoader",
                    format!("shard {rank} of {world}: the rank must be below the world size"),
                ));
            }
        }
        // An epoch without a batch would train and evaluate on nothing and report a loss and
        // an accuracy of 0 as if it had (PyTorch's shuffling sampler refuses an empty dataset
        // too).
        let batches = if config.drop_last {
            data.len() / config.batch_size
        } else {
            data.len().div_ceil(config.batch_size)
        };
        if batches == 0 {
            return Err(Error::config(
                "DataLoader",
                if data.is_empty() {
                    "the dataset holds no samples: an epoch would have no batch".to_string()
                } else {
                    format!(
                        "drop_last with a batch size of {} over {} samples: an epoch would have \
                         no batch",
                        config.batch_size,
                        data.len()
                    )
                },
            ));
        }
        // `2 * max_shift + 1` shifts are drawn from; a shift is at most a side of an image,
        // and sides are at most the size limit, which keeps that sum and `y - dy` in range
        // (`usize::MAX` overflowed).
        if config.max_shift > crate::tensor::MAX_ELEMENTS {
            return Err(Error::config(
                "DataLoader",
                format!(
                    "max_shift {} is more than {} (2^28), the largest side an image may have",
                    config.max_shift,
                    crate::tensor::MAX_ELEMENTS
                ),
            ));
        }
        if let Some((mean, std)) = config.normalize {
            if !(std > 0.0 && std.is_finite() && mean.is_finite()) {
                return Err(Error::config(
                    "DataLoader",
                    format!("normalize needs a finite mean and std > 0, got ({mean}, {std})"),
                ));
            }
        }
        Ok(DataLoader { data, config })
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// The same data and configuration, sharded as process `rank` of `world`.
    pub fn sharded(&self, rank: usize, world: usize) -> Result<DataLoader<'a, D>> {
        DataLoader::new(self.data, self.config.shard(rank, world))
    }

    /// Number of samples the loader draws from.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the dataset is empty.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Number of batches per epoch (global batches: the same on every shard).
    pub fn num_batches(&self) -> usize {
        let (n, b) = (self.data.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The sample order of `epoch`.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.data.len()).collect();
        if self.config.shuffle {
            let mut rng = self.epoch_rng(epoch, 0);
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i + 1));
            }
        }
        order
    }

    fn epoch_rng(&self, epoch: usize, stream: u64) -> Rng64 {
        let mix = (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        Rng64::seed(self.config.seed ^ mix)
    }

    /// The shift of sample `index` in `epoch`: its own generator, seeded by
    /// `(seed, epoch, index)`, so it does not depend on which process draws the sample or on
    /// the samples drawn before it.
    fn shift_of(&self, epoch: usize, index: usize) -> (isize, isize) {
        let m = self.config.max_shift;
        if m == 0 {
            return (0, 0);
        }
        let mut rng = self.epoch_rng(epoch, 1);
        let mut rng =
            Rng64::seed(rng.next_u64() ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407));
        let span = 2 * m + 1;
        (
            rng.below(span) as isize - m as isize,
            rng.below(span) as isize - m as isize,
        )
    }

    /// The positions in the epoch order of global batch `batch` that belong to this shard.
    fn shard_positions(&self, batch: usize) -> Range<usize> {
        let (n, b) = (self.data.len(), self.config.batch_size);
        // Saturating: with a batch size near `usize::MAX` the batch after the last one would
        // overflow (a panic in debug builds); it is an empty range, as it should be.
        let start = batch.saturating_mul(b).min(n);
        start..start.saturating_add(b).min(n)
    }

    /// The batches of `epoch` (0-based).
    pub fn epoch<T: Float>(&self, epoch: usize) -> Batches<'_, 'a, D, T> {
        Batches {
            loader: self,
            order: self.order(epoch),
            epoch,
            batch: 0,
            _t: std::marker::PhantomData,
        }
    }

    /// Runs `f` on every batch of `epoch`, in order, while a helper thread prepares the next
    /// batch (one batch ahead), so reading and decoding overlap the caller's work. The batches
    /// are those of [`DataLoader::epoch`]. Stops at the first error, from `f` or from reading
    /// a sample, and returns it.
    pub fn for_each_batch<T: Float, E: From<Error>>(
        &self,
        epoch: usize,
        mut f: impl FnMut(Batch<T>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        // A channel of capacity 1: the helper holds at most the batch being built plus one
        // finished batch waiting. Dropping the receiver (an error in `f`) stops the helper at
        // its next send.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Batch<T>>>(1);
        std::thread::scope(|scope| {
            scope.spawn(move || {
                for batch in self.epoch::<T>(epoch) {
                    if tx.send(batch).is_err() {
                        break;
                    }
                }
            });
            for batch in rx {
                f(batch?)?;
            }
            Ok(())
        })
    }
}

/// Iterator over the batches of one epoch. A sample that cannot be read (see
/// [`Dataset::sample`]) makes its batch an error.
pub struct Batches<'l, 'a, D: Dataset, T: Float> {
    loader: &'l DataLoader<'a, D>,
    order: Vec<usize>,
    epoch: usize,
    batch: usize,
    _t: std::marker::PhantomData<T>,
}

impl<D: Dataset, T: Float> Iterator for Batches<'_, '_, D, T> {
    type Item = Result<Batch<T>>;

    fn next(&mut self) -> Option<Result<Batch<T>>> {
        let cfg = self.loader.config;
        let global = self.loader.shard_positions(self.batch);
        if global.is_empty() || (cfg.drop_last && global.len() < cfg.batch_size) {
            return None;
        }
        self.batch += 1;
        let (rank, world) = cfg.shard.unwrap_or((0, 1));
        let indices: Vec<usize> = global
            .filter(|p| p % world == rank)
            .filter_map(|p| self.order.get(p).copied())
            .collect();
        let size = indices.len();
        let data = self.loader.data;
        let shape = data.sample_shape();
        let per: usize = shape.iter().product();
        let (loader, epoch) = (self.loader, self.epoch);
        // `DataLoader::new` checked that a batch of samples fits in the tensor size limit.
        let mut images = vec![T::zero(); size * per];
        let mut labels = vec![0usize; size];
        let read = images
            .par_chunks_mut(per)
            .zip(labels.par_iter_mut())
            .zip(indices.par_iter())
            .try_for_each_init(
                || vec![0.0f32; per],
                |scratch, ((out, label), &index)| -> Result<()> {
                    *label = data.sample(index, scratch)?;
                    let (dy, dx) = loader.shift_of(epoch, index);
                    write_shifted(scratch, &shape, dy, dx, cfg.normalize, out);
                    Ok(())
                },
            );
        if let Err(e) = read {
            return Some(Err(e));
        }
        let mut batch_shape = vec![size];
        batch_shape.extend_from_slice(&shape);
        Some(
            Tensor::from_shape_vec(IxDyn(&batch_shape), images)
                .map_err(Error::from)
                .map(|images| Batch { images, labels }),
        )
    }
}

/// Writes `sample` (`[C, H, W]`, or any shape whose last two axes are an image) shifted by
/// `(dy, dx)` with zero fill, then normalised, into `out` (as many values as `sample`).
fn write_shifted<T: Float>(
    sample: &[f32],
    shape: &[usize],
    dy: isize,
    dx: isize,
    normalize: Option<(f64, f64)>,
    out: &mut [T],
) {
    let (mean, std) = normalize.unwrap_or((0.0, 1.0));
    let norm = |v: f32| T::of((v as f64 - mean) / std);
    let (h, w) = match shape {
        [.., h, w] if (dy, dx) != (0, 0) && h * w > 0 => (*h as isize, *w as isize),
        _ => {
            for (o, &v) in out.iter_mut().zip(sample) {
                *o = norm(v);
            }
            return;
        }
    };
    let plane = (h * w) as usize;
    for (src, dst) in sample.chunks(plane).zip(out.chunks_mut(plane)) {
        for y in 0..h {
            for x in 0..w {
                let (sy, sx) = (y - dy, x - dx);
                let v = if (0..h).contains(&sy) && (0..w).contains(&sx) {
                    src.get((sy * w + sx) as usize).copied().unwrap_or(0.0)
                } else {
                    0.0
                };
                if let Some(d) = dst.get_mut((y * w + x) as usize) {
                    *d = norm(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::ImageSet;

    /// 10 images of 2x2 whose pixels all equal their index.
    fn tiny() -> ImageSet {
        let images = (0..10u8).flat_map(|i| [i; 4]).collect();
        ImageSet::new(images, (0..10).collect(), 2, 2, 10).unwrap()
    }

    fn epoch_labels(loader: &DataLoader<'_, ImageSet>, epoch: usize) -> Vec<Vec<usize>> {
        loader
            .epoch::<f32>(epoch)
            .map(|b| b.unwrap().labels)
            .collect()
    }

    #[test]
    fn every_sample_exactly_once_per_epoch() {
        let data = tiny();
        let loader = DataLoader::new(&data, LoaderConfig::new(3).shuffle(5)).unwrap();
        assert_eq!(loader.num_batches(), 4);
        for epoch in 0..3 {
            let batches = epoch_labels(&loader, epoch);
            assert_eq!(
                batches.iter().map(Vec::len).collect::<Vec<_>>(),
                vec![3, 3, 3, 1]
            );
            let mut all: Vec<usize> = batches.concat();
            all.sort();
            assert_eq!(all, (0..10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn shuffling_depends_on_seed_and_epoch_and_repeats() {
        let data = tiny();
        let a = DataLoader::new(&data, LoaderConfig::new(10).shuffle(1)).unwrap();
        let b = DataLoader::new(&data, LoaderConfig::new(10).shuffle(2)).unwrap();
        assert_ne!(a.order(0), b.order(0));
        assert_ne!(a.order(0), a.order(1));
        assert_eq!(a.order(3), a.order(3));
        let plain = DataLoader::new(&data, LoaderConfig::new(10)).unwrap();
        assert_eq!(plain.order(4), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn drop_last_and_images_match_labels() {
        let data = tiny();
        let loader =
            DataLoader::new(&data, LoaderConfig::new(4).shuffle(9).drop_last(true)).unwrap();
        assert_eq!(loader.num_batches(), 2);
        let batches: Vec<Batch<f64>> = loader.epoch(0).collect::<Result<_>>().unwrap();
        assert_eq!(batches.len(), 2);
        for b in &batches {
            assert_eq!(b.images.shape(), &[4, 1, 2, 2]);
            for (i, &label) in b.labels.iter().enumerate() {
                let v = b.images[[i, 0, 1, 1]];
                assert!((v - label as f64 / 255.0).abs() < 1e-7);
            }
        }
    }

    #[test]
    fn normalisation_and_shift() {
        let shape = [1, 3, 3];
        let sample: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let mut out = vec![0f64; 9];
        write_shifted(&sample, &shape, 1, -1, Some((1.0, 2.0)), &mut out);
        // Shifted down by one and left by one: row 0 is fill, column 2 is fill.
        let raw: Vec<f64> = out.iter().map(|v| v * 2.0 + 1.0).collect();
        assert_eq!(raw, vec![0.0, 0.0, 0.0, 2.0, 3.0, 0.0, 5.0, 6.0, 0.0]);
    }

    /// Sharded loaders (3 processes, uneven 10 = 4 + 3 + 3, global batch 4): at every step the
    /// union of the shards' batches is the single-process batch, image for image (same
    /// augmentation), every sample appears once per epoch, and every shard runs the same
    /// number of steps.
    #[test]
    fn shards_partition_every_global_batch() {
        let data = tiny();
        let cfg = LoaderConfig::new(4).shuffle(3).max_shift(1);
        let whole = DataLoader::new(&data, cfg).unwrap();
        for world in [1, 2, 3, 4] {
            let shards: Vec<DataLoader<'_, ImageSet>> = (0..world)
                .map(|r| whole.sharded(r, world).unwrap())
                .collect();
            for epoch in 0..2 {
                let single: Vec<Batch<f64>> = whole.epoch(epoch).collect::<Result<_>>().unwrap();
                let per_shard: Vec<Vec<Batch<f64>>> = shards
                    .iter()
                    .map(|s| s.epoch(epoch).collect::<Result<_>>().unwrap())
                    .collect();
                let mut seen = Vec::new();
                for (step, global) in single.iter().enumerate() {
                    let mut union: Vec<(usize, Vec<f64>)> = Vec::new();
                    for batches in &per_shard {
                        assert_eq!(batches.len(), single.len(), "same number of steps");
                        let b = &batches[step];
                        for (i, &label) in b.labels.iter().enumerate() {
                            let img = b.images.index_axis(ndarray::Axis(0), i);
                            union.push((label, img.iter().copied().collect()));
                        }
                    }
                    let mut expected: Vec<(usize, Vec<f64>)> = global
                        .labels
                        .iter()
                        .enumerate()
                        .map(|(i, &label)| {
                            let img = global.images.index_axis(ndarray::Axis(0), i);
                            (label, img.iter().copied().collect())
                        })
                        .collect();
                    let key = |x: &(usize, Vec<f64>)| x.0;
                    union.sort_by_key(key);
                    expected.sort_by_key(key);
                    assert_eq!(union, expected, "world {world} epoch {epoch} step {step}");
                    seen.extend(union.iter().map(|x| x.0));
                }
                seen.sort();
                assert_eq!(seen, (0..10).collect::<Vec<_>>());
            }
        }
        // Shares interleave: with 2 shards, shard 0 holds positions 0, 2 of the first batch.
        let order = whole.order(0);
        let first: Vec<usize> = shards_first(&whole, 0, 2);
        assert_eq!(first, vec![order[0], order[2]]);
        assert!(whole.sharded(2, 2).is_err());
        assert!(whole.sharded(0, 0).is_err());
    }

    fn shards_first(loader: &DataLoader<'_, ImageSet>, rank: usize, world: usize) -> Vec<usize> {
        let shard = loader.sharded(rank, world).unwrap();
        let batch: Batch<f32> = shard.epoch(0).next().unwrap().unwrap();
        batch.labels
    }

    /// Shifts depend on (seed, epoch, sample), not on the order samples are drawn in.
    #[test]
    fn shifts_are_per_sample() {
        let data = tiny();
        let cfg = LoaderConfig::new(10).shuffle(4).max_shift(2);
        let loader = DataLoader::new(&data, cfg).unwrap();
        let shifts: Vec<(isize, isize)> = (0..10).map(|i| loader.shift_of(0, i)).collect();
        assert!(shifts.iter().any(|&s| s != shifts[0]), "shifts vary");
        assert!(shifts.iter().all(|&(y, x)| y.abs() <= 2 && x.abs() <= 2));
        assert_eq!(loader.shift_of(0, 3), shifts[3]);
        assert_ne!(
            (0..10).map(|i| loader.shift_of(1, i)).collect::<Vec<_>>(),
            shifts,
            "a new epoch draws new shifts"
        );
    }

    #[test]
    fn bad_configuration_is_an_error() {
        let data = tiny();
        assert!(DataLoader::new(&data, LoaderConfig::new(0)).is_err());
        assert!(DataLoader::new(&data, LoaderConfig::new(2).normalize(0.0, 0.0)).is_err());
    }

    /// A dataset whose sample `i` holds `i * 100 + position` and whose reads can be slow and
    /// are counted, to see how many run at once. (Only the thread tests use it.)
    #[cfg_attr(not(feature = "rayon"), allow(dead_code))]
    struct Probe {
        n: usize,
        delay_ms: u64,
        in_flight: std::sync::atomic::AtomicUsize,
        max_in_flight: std::sync::atomic::AtomicUsize,
    }

    #[cfg_attr(not(feature = "rayon"), allow(dead_code))]
    impl Probe {
        fn new(n: usize, delay_ms: u64) -> Self {
            Probe {
                n,
                delay_ms,
                in_flight: 0.into(),
                max_in_flight: 0.into(),
            }
        }
    }

    impl Dataset for Probe {
        fn len(&self) -> usize {
            self.n
        }
        fn sample_shape(&self) -> Vec<usize> {
            vec![2, 3, 3]
        }
        fn num_classes(&self) -> usize {
            self.n
        }
        fn sample(&self, index: usize, out: &mut [f32]) -> Result<usize> {
            use std::sync::atomic::Ordering::SeqCst;
            let now = self.in_flight.fetch_add(1, SeqCst) + 1;
            self.max_in_flight.fetch_max(now, SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(self.delay_ms));
            for (k, o) in out.iter_mut().enumerate() {
                *o = (index * 100 + k) as f32;
            }
            self.in_flight.fetch_sub(1, SeqCst);
            Ok(index)
        }
    }

    #[cfg(feature = "rayon")]
    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    #[test]
    #[cfg(feature = "rayon")]
    fn batches_do_not_depend_on_the_thread_count() {
        let data = Probe::new(23, 0);
        let cfg = LoaderConfig::new(5)
            .shuffle(3)
            .max_shift(1)
            .normalize(0.5, 2.0);
        let loader = DataLoader::new(&data, cfg).unwrap();
        let run = |threads: usize| -> Vec<Batch<f64>> {
            pool(threads).install(|| loader.epoch(2).collect::<Result<_>>().unwrap())
        };
        let one = run(1);
        // The reference, written out sequentially: the epoch's order, each sample shifted by
        // its own seeded shift.
        let order = loader.order(2);
        let mut scratch = vec![0f32; 18];
        let mut expected = Vec::new();
        for &index in &order {
            assert_eq!(data.sample(index, &mut scratch).unwrap(), index);
            let (dy, dx) = loader.shift_of(2, index);
            assert!(dy.abs() <= 1 && dx.abs() <= 1);
            let mut out = vec![0f64; 18];
            write_shifted(&scratch, &[2, 3, 3], dy, dx, Some((0.5, 2.0)), &mut out);
            expected.push((index, out));
        }
        let flat: Vec<(usize, Vec<f64>)> = one
            .iter()
            .flat_map(|b| {
                b.labels
                    .iter()
                    .enumerate()
                    .map(|(i, &l)| (l, b.images.as_slice().unwrap()[i * 18..][..18].to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(flat, expected);
        for threads in [2, 4] {
            let many = run(threads);
            assert_eq!(many.len(), one.len());
            for (a, b) in one.iter().zip(&many) {
                assert_eq!(a.labels, b.labels, "{threads} threads");
                assert_eq!(a.images, b.images, "{threads} threads");
            }
        }
    }

    #[test]
    #[cfg(feature = "rayon")]
    fn samples_of_a_batch_are_read_in_parallel() {
        let data = Probe::new(8, 30);
        let loader = DataLoader::new(&data, LoaderConfig::new(8)).unwrap();
        let batch: Batch<f32> = pool(2).install(|| loader.epoch(0).next().unwrap().unwrap());
        assert_eq!(batch.labels, (0..8).collect::<Vec<_>>());
        let most = data.max_in_flight.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            most >= 2,
            "at most {most} sample read at a time with 2 threads"
        );
    }

    #[test]
    fn for_each_batch_gives_the_epoch_in_order_and_stops_at_an_error() {
        let data = tiny();
        let loader = DataLoader::new(&data, LoaderConfig::new(3).shuffle(4)).unwrap();
        let mut seen = Vec::new();
        loader
            .for_each_batch::<f32, Error>(1, |b| {
                seen.push(b.labels);
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, epoch_labels(&loader, 1));
        let mut calls = 0;
        let result = loader.for_each_batch::<f32, Error>(1, |_| {
            calls += 1;
            if calls == 2 {
                Err(Error::input("test", "stop"))
            } else {
                Ok(())
            }
        });
        assert!(result.unwrap_err().to_string().contains("stop"));
        assert_eq!(calls, 2);
    }
}
