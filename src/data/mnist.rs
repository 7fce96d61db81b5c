//! MNIST: 60,000 training and 10,000 test images of handwritten digits, 28x28, from the four
//! standard IDX files.

use super::idx::read_idx;
use super::Dataset;
use crate::error::{Error, Result};
use std::path::Path;

/// Mean pixel value of the MNIST training set (pixels scaled to `[0, 1]`).
pub const MNIST_MEAN: f64 = 0.1307;
/// Standard deviation of the MNIST training pixels.
pub const MNIST_STD: f64 = 0.3081;

/// Labelled grey-scale images held in memory as bytes.
#[derive(Clone, Debug)]
pub struct ImageSet {
    images: Vec<u8>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
    num_classes: usize,
}

impl ImageSet {
    /// Builds a set from `n * rows * cols` pixel bytes and `n` labels.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u8>,
        rows: usize,
        cols: usize,
        num_classes: usize,
    ) -> Result<Self> {
        if rows == 0 || cols == 0 {
            return Err(Error::input(
                "ImageSet",
                format!(
                    "images of {rows}x{cols} pixels hold nothing; rows and cols must be at least 1"
                ),
            ));
        }
        let expected = labels
            .len()
            .checked_mul(rows)
            .and_then(|n| n.checked_mul(cols));
        if expected != Some(images.len()) {
            return Err(Error::input(
                "ImageSet",
                format!(
                    "{} pixel bytes for {} labels of {rows}x{cols} images",
                    images.len(),
                    labels.len()
                ),
            ));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= num_classes) {
            return Err(Error::input(
                "ImageSet",
                format!("label {bad} is not below {num_classes} classes"),
            ));
        }
        Ok(ImageSet {
            images,
            labels,
            rows,
            cols,
            num_classes,
        })
    }

    /// Reads an images file and a labels file (IDX, gzipped or raw) and checks they agree.
    pub fn from_idx(images_path: &Path, labels_path: &Path, num_classes: usize) -> Result<Self> {
        let images = read_idx(images_path)?;
        let labels = read_idx(labels_path)?;
        let file_err = |path: &Path, message: String| Error::File {
            path: path.to_path_buf(),
            message,
        };
        let &[n, rows, cols] = images.dims.as_slice() else {
            return Err(file_err(
                images_path,
                format!(
                    "expected 3 dimensions [N, rows, cols], found {:?}",
                    images.dims
                ),
            ));
        };
        let &[m] = labels.dims.as_slice() else {
            return Err(file_err(
                labels_path,
                format!("expected 1 dimension [N], found {:?}", labels.dims),
            ));
        };
        if rows == 0 || cols == 0 {
            return Err(file_err(
                images_path,
                format!(
                    "images of {rows}x{cols} pixels hold nothing (dimensions {:?})",
                    images.dims
                ),
            ));
        }
        if n != m {
            return Err(file_err(
                labels_path,
                format!("{m} labels but {} holds {n} images", images_path.display()),
            ));
        }
        if let Some((i, &bad)) = labels
            .data
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= num_classes)
        {
            return Err(file_err(
                labels_path,
                format!("label {bad} at index {i} is not below {num_classes}"),
            ));
        }
        Ok(ImageSet {
            images: images.data,
            labels: labels.data,
            rows,
            cols,
            num_classes,
        })
    }

    /// The first `n` samples (all of them if there are fewer).
    pub fn take(&self, n: usize) -> ImageSet {
        let n = n.min(self.labels.len());
        // `new` checked that the images hold `labels.len() * rows * cols` bytes.
        ImageSet {
            images: self
                .images
                .iter()
                .take(n * self.rows * self.cols)
                .copied()
                .collect(),
            labels: self.labels.iter().take(n).copied().collect(),
            ..*self
        }
    }

    /// The label of every sample.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The pixels of sample `index` as bytes (`rows * cols` of them).
    /// An index past the end gives an empty slice.
    pub fn pixels(&self, index: usize) -> &[u8] {
        let size = self.rows * self.cols;
        index
            .checked_mul(size)
            .and_then(|start| self.images.get(start..start.checked_add(size)?))
            .unwrap_or_default()
    }
}

impl Dataset for ImageSet {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn sample_shape(&self) -> Vec<usize> {
        vec![1, self.rows, self.cols]
    }

    fn num_classes(&self) -> usize {
        self.num_classes
    }

    fn sample(&self, index: usize, out: &mut [f32]) -> Result<usize> {
        let index = super::check_sample("ImageSet::sample", self, index, out)?;
        // `new` checked that the images hold `len() * rows * cols` bytes, so both are found.
        let (Some(&label), pixels) = (self.labels.get(index), self.pixels(index)) else {
            return Err(Error::input("ImageSet::sample", format!("index {index}")));
        };
        for (o, &p) in out.iter_mut().zip(pixels) {
            *o = p as f32 / 255.0;
        }
        Ok(label as usize)
    }
}

/// The MNIST training and test sets.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// 60,000 training images.
    pub train: ImageSet,
    /// 10,000 test images.
    pub test: ImageSet,
}

impl Mnist {
    /// Loads the four standard files from `dir`: `train-images-idx3-ubyte`,
    /// `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, each either
    /// gzipped (`.gz`) or raw.
    pub fn load(dir: &Path) -> Result<Mnist> {
        if !dir.is_dir() {
            return Err(Error::File {
                path: dir.to_path_buf(),
                message: "MNIST data folder not found (expected the four IDX files here)".into(),
            });
        }
        let find = |stem: &str| -> Result<std::path::PathBuf> {
            [format!("{stem}.gz"), stem.to_string()]
                .into_iter()
                .map(|name| dir.join(name))
                .find(|p| p.is_file())
                .ok_or_else(|| Error::File {
                    path: dir.join(format!("{stem}.gz")),
                    message: format!("missing (neither {stem}.gz nor {stem} is in the folder)"),
                })
        };
        let set =
            |images: &str, labels: &str| ImageSet::from_idx(&find(images)?, &find(labels)?, 10);
        Ok(Mnist {
            train: set("train-images-idx3-ubyte", "train-labels-idx1-ubyte")?,
            test: set("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{encode_idx, IdxArray};

    fn write(dir: &Path, name: &str, dims: Vec<usize>, data: Vec<u8>) {
        std::fs::write(dir.join(name), encode_idx(&IdxArray { dims, data })).unwrap();
    }

    #[test]
    fn loads_raw_files_and_checks_counts_and_labels() {
        let dir = std::env::temp_dir().join(format!("convnet-mnist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write(
            &dir,
            "train-images-idx3-ubyte",
            vec![3, 2, 2],
            (0..12).collect(),
        );
        write(&dir, "train-labels-idx1-ubyte", vec![3], vec![1, 2, 3]);
        write(
            &dir,
            "t10k-images-idx3-ubyte",
            vec![1, 2, 2],
            vec![255, 0, 0, 0],
        );
        write(&dir, "t10k-labels-idx1-ubyte", vec![1], vec![9]);
        let m = Mnist::load(&dir).unwrap();
        assert_eq!(m.train.len(), 3);
        let mut px = [0f32; 4];
        assert_eq!(m.test.sample(0, &mut px).unwrap(), 9);
        assert_eq!(px, [1.0, 0.0, 0.0, 0.0]);

        // Count mismatch names the labels file.
        write(&dir, "t10k-labels-idx1-ubyte", vec![2], vec![9, 9]);
        let msg = Mnist::load(&dir).unwrap_err().to_string();
        assert!(
            msg.contains("t10k-labels") && msg.contains("2 labels"),
            "{msg}"
        );
        // A label out of range.
        write(&dir, "t10k-labels-idx1-ubyte", vec![1], vec![10]);
        assert!(Mnist::load(&dir)
            .unwrap_err()
            .to_string()
            .contains("label 10"));
        // A missing file.
        std::fs::remove_file(dir.join("t10k-labels-idx1-ubyte")).unwrap();
        assert!(Mnist::load(&dir)
            .unwrap_err()
            .to_string()
            .contains("missing"));
        std::fs::remove_dir_all(&dir).ok();
        assert!(Mnist::load(&dir)
            .unwrap_err()
            .to_string()
            .contains("not found"));
    }
}
