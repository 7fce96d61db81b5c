//! Data: the IDX reader, MNIST, a [`Dataset`] trait and a seeded batch iterator.

mod idx;
mod loader;
mod mnist;

pub use idx::{decode_idx, encode_idx, parse_idx, read_idx, IdxArray, MAX_IDX_BYTES};
pub use loader::{Batch, Batches, DataLoader, LoaderConfig};
pub use mnist::{ImageSet, Mnist, MNIST_MEAN, MNIST_STD};

/// A finite collection of labelled samples of one shape.
pub trait Dataset: Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one sample, `[C, H, W]` for images.
    fn sample_shape(&self) -> Vec<usize>;

    /// Number of classes the labels range over.
    fn num_classes(&self) -> usize;

    /// Writes sample `index` (values in `[0, 1]` for images) into `out`, which has
    /// `sample_shape().product()` elements, and returns its label.
    fn sample(&self, index: usize, out: &mut [f32]) -> usize;
}
