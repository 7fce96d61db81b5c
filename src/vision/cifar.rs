//! CIFAR-10 and CIFAR-100 in their binary form (`data_batch_1.bin`, `train.bin`, ...).

use super::Image;
use crate::data::Dataset;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Pixel bytes of one CIFAR image: 3 planes (red, green, blue) of 32 x 32.
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;

/// Which CIFAR binary layout a file has, and for CIFAR-100 which label to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarKind {
    /// CIFAR-10: one label byte (0..10) then the pixels.
    Ten,
    /// CIFAR-100 with its 20 coarse (super-class) labels: coarse byte, fine byte, pixels.
    HundredCoarse,
    /// CIFAR-100 with its 100 fine labels: coarse byte, fine byte, pixels.
    HundredFine,
}

impl CifarKind {
    fn label_bytes(self) -> usize {
        match self {
            CifarKind::Ten => 1,
            _ => 2,
        }
    }

    fn num_classes(self) -> usize {
        match self {
            CifarKind::Ten => 10,
            CifarKind::HundredCoarse => 20,
            CifarKind::HundredFine => 100,
        }
    }
}

/// CIFAR images held in memory as bytes (32 x 32 RGB, stored as three planes, which is
/// already `[3, 32, 32]`). Samples are floats in `[0, 1]`, as torchvision's `ToTensor` gives.
#[derive(Clone, Debug)]
pub struct Cifar {
    kind: CifarKind,
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl Cifar {
    /// Reads and concatenates binary batch files of one kind. A file whose length is not a
    /// whole number of records, an empty file, or a label out of range is an [`Error::File`]
    /// naming it.
    pub fn open<P: AsRef<Path>>(kind: CifarKind, files: &[P]) -> Result<Self> {
        let mut set = Cifar {
            kind,
            pixels: Vec::new(),
            labels: Vec::new(),
        };
        for path in files {
            let path = path.as_ref();
            let bytes = crate::io::read_regular_file(path, "cannot read CIFAR batch")?;
            set.append(&bytes).map_err(|message| Error::File {
                path: path.to_path_buf(),
                message,
            })?;
        }
        if set.labels.is_empty() {
            return Err(Error::input("Cifar::open", "no batch files given"));
        }
        Ok(set)
    }

    /// Parses records from memory (one file's content).
    pub fn from_bytes(kind: CifarKind, bytes: &[u8]) -> Result<Self> {
        let mut set = Cifar {
            kind,
            pixels: Vec::new(),
            labels: Vec::new(),
        };
        set.append(bytes).map_err(|message| Error::File {
            path: PathBuf::from("<bytes>"),
            message,
        })?;
        Ok(set)
    }

    fn append(&mut self, bytes: &[u8]) -> std::result::Result<(), String> {
        let lb = self.kind.label_bytes();
        let record = lb + CIFAR_IMAGE_BYTES;
        if bytes.is_empty() || bytes.len() % record != 0 {
            return Err(format!(
                "{} bytes is not a whole number of {record}-byte {:?} records (truncated, or the other CIFAR kind?)",
                bytes.len(),
                self.kind
            ));
        }
        let label_at = match self.kind {
            CifarKind::Ten | CifarKind::HundredCoarse => 0,
            CifarKind::HundredFine => 1,
        };
        for (i, rec) in bytes.chunks_exact(record).enumerate() {
            // A record is `lb` label bytes (1 or 2) and the image: `label_at < lb <= len`.
            let (labels, image) = rec.split_at(lb.min(rec.len()));
            let (Some(&label), Some(&first)) = (labels.get(label_at), labels.first()) else {
                return Err(format!("record {i} is too short"));
            };
            if label as usize >= self.kind.num_classes() {
                return Err(format!(
                    "record {i}: label {label} is not below {} classes (is this a {:?} file?)",
                    self.kind.num_classes(),
                    self.kind
                ));
            }
            if lb == 2 && first >= 20 {
                return Err(format!("record {i}: coarse label {first} is not below 20"));
            }
            self.labels.push(label);
            self.pixels.extend_from_slice(image);
        }
        Ok(())
    }

    /// CIFAR-10's training set: `data_batch_1.bin` ... `data_batch_5.bin` in `dir`.
    pub fn cifar10_train(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let files: Vec<_> = (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .collect();
        Cifar::open(CifarKind::Ten, &files)
    }

    /// CIFAR-10's test set: `test_batch.bin` in `dir`.
    pub fn cifar10_test(dir: impl AsRef<Path>) -> Result<Self> {
        Cifar::open(CifarKind::Ten, &[dir.as_ref().join("test_batch.bin")])
    }

    /// CIFAR-100's training (`train.bin`) or test (`test.bin`) set in `dir`, with fine or
    /// coarse labels.
    pub fn cifar100(dir: impl AsRef<Path>, train: bool, kind: CifarKind) -> Result<Self> {
        if kind == CifarKind::Ten {
            return Err(Error::config(
                "Cifar::cifar100",
                "kind must be a CIFAR-100 kind",
            ));
        }
        let name = if train { "train.bin" } else { "test.bin" };
        Cifar::open(kind, &[dir.as_ref().join(name)])
    }

    /// The label of every sample.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Sample `index` as an 8-bit [`Image`], for the transforms of [`super::transforms`].
    pub fn image(&self, index: usize) -> Result<Image> {
        if index >= self.labels.len() {
            return Err(Error::input(
                "Cifar::image",
                format!("index {index} with {} samples", self.labels.len()),
            ));
        }
        let planes = index
            .checked_mul(CIFAR_IMAGE_BYTES)
            .and_then(|start| {
                self.pixels
                    .get(start..start.checked_add(CIFAR_IMAGE_BYTES)?)
            })
            .unwrap_or_default();
        let (r, gb) = planes.split_at(planes.len() / 3);
        let (g, b) = gb.split_at(gb.len() / 2);
        let mut rgb = Vec::with_capacity(CIFAR_IMAGE_BYTES);
        for ((&r, &g), &b) in r.iter().zip(g).zip(b) {
            rgb.extend_from_slice(&[r, g, b]);
        }
        // An image short of bytes (impossible after `append`) is an error from `from_rgb`.
        Image::from_rgb(32, 32, rgb)
    }
}

impl Dataset for Cifar {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn sample_shape(&self) -> Vec<usize> {
        vec![3, 32, 32]
    }

    fn num_classes(&self) -> usize {
        self.kind.num_classes()
    }

    fn sample(&self, index: usize, out: &mut [f32]) -> Result<usize> {
        let index = crate::data::check_sample("Cifar::sample", self, index, out)?;
        // The loader checked that the pixels hold `len()` whole images, so both are found.
        let planes = index.checked_mul(CIFAR_IMAGE_BYTES).and_then(|start| {
            self.pixels
                .get(start..start.checked_add(CIFAR_IMAGE_BYTES)?)
        });
        let (Some(planes), Some(&label)) = (planes, self.labels.get(index)) else {
            return Err(Error::input("Cifar::sample", format!("index {index}")));
        };
        for (o, &b) in out.iter_mut().zip(planes) {
            *o = b as f32 / 255.0;
        }
        Ok(label as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records whose pixel byte at plane `c`, position `p` is `(i + c + p) % 256`.
    fn records(labels: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, l) in labels.iter().enumerate() {
            out.extend_from_slice(l);
            for c in 0..3 {
                out.extend((0..1024).map(|p| ((i + 7 * c + p) % 256) as u8));
            }
        }
        out
    }

    #[test]
    fn cifar10_records_labels_and_pixels() {
        let set = Cifar::from_bytes(CifarKind::Ten, &records(&[&[3], &[9]])).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.labels(), [3, 9]);
        assert_eq!(set.num_classes(), 10);
        let mut out = vec![0f32; 3072];
        assert_eq!(set.sample(1, &mut out).unwrap(), 9);
        // Plane 1 (green), position 33 = row 1, column 1: (1 + 7 + 33) % 256 = 41.
        assert_eq!(out[1024 + 33], 41.0 / 255.0);
        let img = set.image(1).unwrap();
        assert_eq!(img.pixel(1, 1).unwrap(), [34, 41, 48]);
        assert!(set.image(2).is_err());
        // Past the end (it used to panic slicing the pixels), or a short buffer: errors.
        let err = set.sample(2, &mut out).unwrap_err();
        assert!(err.to_string().contains("past the end"), "{err}");
        assert!(set.sample(usize::MAX, &mut out).is_err());
        assert!(set.sample(0, &mut out[..3071]).is_err());
    }

    #[test]
    fn cifar100_fine_and_coarse() {
        let bytes = records(&[&[4, 77], &[19, 0]]);
        let fine = Cifar::from_bytes(CifarKind::HundredFine, &bytes).unwrap();
        assert_eq!(fine.labels(), [77, 0]);
        assert_eq!(fine.num_classes(), 100);
        let coarse = Cifar::from_bytes(CifarKind::HundredCoarse, &bytes).unwrap();
        assert_eq!(coarse.labels(), [4, 19]);
        let mut out = vec![0f32; 3072];
        fine.sample(0, &mut out).unwrap();
        assert_eq!(out[0], 0.0);
        assert_eq!(out[2048 + 5], 19.0 / 255.0);
    }

    #[test]
    fn truncated_wrong_kind_and_bad_labels_are_errors() {
        let ten = records(&[&[1], &[2]]);
        let e = Cifar::from_bytes(CifarKind::Ten, &ten[..ten.len() - 1]).unwrap_err();
        assert!(e.to_string().contains("whole number"), "{e}");
        // A CIFAR-10 file read as CIFAR-100: 2 x 3073 bytes is not a multiple of 3074.
        assert!(Cifar::from_bytes(CifarKind::HundredFine, &ten).is_err());
        assert!(Cifar::from_bytes(CifarKind::Ten, &records(&[&[10]])).is_err());
        assert!(Cifar::from_bytes(CifarKind::HundredFine, &records(&[&[20, 5]])).is_err());
        assert!(Cifar::from_bytes(CifarKind::Ten, &[]).is_err());
    }

    #[test]
    fn files_are_read_in_order_and_errors_name_them() {
        let dir = std::env::temp_dir().join(format!("convnet-cifar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 1..=5u8 {
            std::fs::write(
                dir.join(format!("data_batch_{i}.bin")),
                records(&[&[i], &[i]]),
            )
            .unwrap();
        }
        let set = Cifar::cifar10_train(&dir).unwrap();
        assert_eq!(set.labels(), [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
        let e = Cifar::cifar10_test(&dir).unwrap_err();
        assert!(e.to_string().contains("test_batch.bin"), "{e}");
        std::fs::write(dir.join("data_batch_3.bin"), [0u8; 100]).unwrap();
        let e = Cifar::cifar10_train(&dir).unwrap_err();
        assert!(e.to_string().contains("data_batch_3.bin"), "{e}");
        assert!(Cifar::cifar100(&dir, true, CifarKind::Ten).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
