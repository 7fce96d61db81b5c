//! `ImageFolder`: a labelled image dataset laid out as one sub-folder per class.

use super::decode::decode_file;
use super::transforms::Compose;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::rng::Rng64;
use crate::tensor::Tensor;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// File extensions (compared case-insensitively) that [`ImageFolder`] picks up: the formats
/// [`super::decode_file`] reads.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Images in `root/<class>/...`, like `torchvision.datasets.ImageFolder`: the classes are the
/// sub-folders of `root` sorted by name (label `i` is the `i`-th), and each class holds every
/// file below its folder (recursively, in sorted order) whose extension is in
/// [`IMAGE_EXTENSIONS`]. Symbolic links are followed, but each folder is listed once per
/// class (a link back to an ancestor adds nothing).
///
/// Images are decoded when a sample is asked for and pass through the transform, which must
/// give one tensor shape for every image (end it with a fixed-size crop or resize). Random
/// transforms draw from a generator seeded by the dataset seed, the epoch
/// ([`ImageFolder::set_epoch`]) and the sample index, so a run repeats whatever the order
/// or the threads that load the samples.
pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    samples: Vec<(PathBuf, usize)>,
    transform: Compose,
    shape: Vec<usize>,
    seed: u64,
    epoch: AtomicU64,
    failures: Mutex<Vec<(usize, String)>>,
}

impl std::fmt::Debug for ImageFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageFolder")
            .field("root", &self.root)
            .field("classes", &self.classes)
            .field("samples", &self.samples.len())
            .field("shape", &self.shape)
            .finish()
    }
}

fn dir_err(path: &Path, e: std::io::Error) -> Error {
    Error::io(path, "cannot list folder", e)
}

/// Sorted entries of a folder.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| dir_err(dir, e))? {
        out.push(entry.map_err(|e| dir_err(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Appends the image files below `dir` (following symbolic links) in sorted order. A folder
/// already listed for this class (`visited`, by canonical path) is not listed again: a link
/// to an ancestor would otherwise recurse until the path grows too long, and two links to
/// the folder above at every level would list 2^depth folders (a hang).
fn collect_images(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    visited: &mut HashSet<PathBuf>,
) -> Result<()> {
    let canonical = std::fs::canonicalize(dir).map_err(|e| dir_err(dir, e))?;
    if !visited.insert(canonical) {
        return Ok(());
    }
    for path in sorted_entries(dir)? {
        if path.is_dir() {
            collect_images(&path, out, visited)?;
        } else if is_image(&path) {
            out.push(path);
        }
    }
    Ok(())
}

impl ImageFolder {
    /// Scans `root` and decodes the first image to learn the transform's output shape.
    ///
    /// Errors: `root` unreadable, no class folders, a class folder without images (as
    /// torchvision refuses them), or a first image that cannot be decoded or transformed.
    pub fn new(root: impl AsRef<Path>, transform: Compose) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let mut classes = Vec::new();
        let mut samples = Vec::new();
        let mut empty = Vec::new();
        for dir in sorted_entries(&root)? {
            if !dir.is_dir() {
                continue;
            }
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut files = Vec::new();
            collect_images(&dir, &mut files, &mut HashSet::new())?;
            if files.is_empty() {
                empty.push(name.clone());
            }
            let label = classes.len();
            samples.extend(files.into_iter().map(|f| (f, label)));
            classes.push(name);
        }
        let file_err = |message: String| Error::File {
            path: root.to_path_buf(),
            message,
        };
        if classes.is_empty() {
            return Err(file_err("no class sub-folders".into()));
        }
        if !empty.is_empty() {
            return Err(file_err(format!(
                "class folders without {} files: {}",
                IMAGE_EXTENSIONS.join("/"),
                empty.join(", ")
            )));
        }
        let mut folder = ImageFolder {
            root,
            classes,
            samples,
            transform,
            shape: Vec::new(),
            seed: 0,
            epoch: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
        };
        folder.shape = folder.get(0)?.0.shape().to_vec();
        Ok(folder)
    }

    /// The same dataset with random transforms seeded by `seed` (0 by default).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Sets the epoch that, with the seed and the index, seeds each sample's random
    /// transforms (call it at the start of every epoch for new augmentations).
    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// The class names, sorted; label `i` is `classes()[i]`.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Every sample's file and label.
    pub fn samples(&self) -> &[(PathBuf, usize)] {
        &self.samples
    }

    fn rng_for(&self, index: usize) -> Rng64 {
        let epoch = self.epoch.load(Ordering::Relaxed);
        Rng64::seed(
            self.seed
                ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
        )
    }

    /// Decodes and transforms sample `index`: the tensor and its label.
    pub fn get(&self, index: usize) -> Result<(Tensor<f32>, usize)> {
        let Some((path, label)) = self.samples.get(index) else {
            return Err(Error::input(
                "ImageFolder::get",
                format!("index {index} with {} samples", self.samples.len()),
            ));
        };
        let img = decode_file(path)?;
        let x = self
            .transform
            .tensor(img, &mut self.rng_for(index))
            .map_err(|e| Error::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        if !self.shape.is_empty() && x.shape() != self.shape.as_slice() {
            return Err(Error::File {
                path: path.to_path_buf(),
                message: format!(
                    "the transform gave shape {:?}, the first image gave {:?} (end the transform with a fixed-size crop)",
                    x.shape(),
                    self.shape
                ),
            });
        }
        Ok((x, *label))
    }

    /// Samples that could not be loaded through [`Dataset::sample`]: their index and error
    /// message. `sample` returns the error too (so a loader or trainer stops with it); this
    /// list keeps every failure seen, for a caller that reads samples itself.
    pub fn failures(&self) -> Vec<(usize, String)> {
        self.failures.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn sample_shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// [`ImageFolder::get`] into `out`. A file that fails to decode is an error (naming the
    /// file), and is also recorded in [`ImageFolder::failures`].
    fn sample(&self, index: usize, out: &mut [f32]) -> Result<usize> {
        let index = crate::data::check_sample("ImageFolder::sample", self, index, out)?;
        match self.get(index) {
            Ok((x, label)) => {
                for (o, v) in out.iter_mut().zip(x.iter()) {
                    *o = *v;
                }
                Ok(label)
            }
            Err(e) => {
                if let Ok(mut f) = self.failures.lock() {
                    f.push((index, e.to_string()));
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::transforms::{CenterCrop, RandomHorizontalFlip, Resize, ToTensor};

    fn write_png(path: &Path, w: u32, h: u32, value: u8) {
        let img = image::RgbImage::from_fn(w, h, |x, _| image::Rgb([value, x as u8, 0]));
        img.save_with_format(path, image::ImageFormat::Png).unwrap();
    }

    fn tmp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("convnet-folder-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn classes_sorted_files_filtered_labels_and_samples() {
        let root = tmp("ok");
        for (class, value) in [("zebra", 200u8), ("ant", 10), ("cat", 100)] {
            std::fs::create_dir_all(root.join(class).join("sub")).unwrap();
            write_png(&root.join(class).join("b.PNG"), 6, 4, value);
            write_png(&root.join(class).join("sub").join("a.png"), 8, 5, value);
            std::fs::write(root.join(class).join("notes.txt"), "not an image").unwrap();
        }
        std::fs::write(root.join("README"), "a file at the top is ignored").unwrap();
        let t = Compose::new()
            .then(Resize::new(4))
            .then(CenterCrop::new(4))
            .then(ToTensor);
        let ds = ImageFolder::new(&root, t).unwrap();
        assert_eq!(ds.classes(), ["ant", "cat", "zebra"]);
        assert_eq!(ds.len(), 6);
        assert_eq!(ds.num_classes(), 3);
        assert_eq!(ds.sample_shape(), vec![3, 4, 4]);
        // Sorted within a class: "b.PNG" before "sub/...".
        assert!(ds.samples()[0].0.ends_with("ant/b.PNG"));
        let mut out = vec![0f32; 48];
        assert_eq!(ds.sample(5, &mut out).unwrap(), 2);
        // The red channel is the constant 200 for zebra.
        assert!(out[..16].iter().all(|&v| (v - 200.0 / 255.0).abs() < 1e-6));
        assert!(ds.failures().is_empty());
        // A file that becomes corrupt after the scan: an error naming it, failure recorded.
        std::fs::write(root.join("cat").join("b.PNG"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
        let err = ds.sample(2, &mut out).unwrap_err();
        assert!(err.to_string().contains("b.PNG"), "{err}");
        // Past the end, or a buffer of the wrong size: errors, not panics.
        assert!(ds.sample(6, &mut out).is_err());
        assert!(ds.sample(0, &mut out[..47]).is_err());
        let f = ds.failures();
        assert_eq!(f.len(), 1);
        assert!(f[0].1.contains("b.PNG"), "{}", f[0].1);
        assert!(ds.get(2).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_link_loops_and_devices_are_not_followed_forever() {
        use std::os::unix::fs::symlink;
        let root = tmp("links");
        let a = root.join("a");
        std::fs::create_dir_all(a.join("sub")).unwrap();
        write_png(&a.join("x.png"), 3, 3, 1);
        write_png(&a.join("sub").join("y.png"), 3, 3, 2);
        // Two links back to the class folder at two levels: the scan used to list 2^k paths
        // at depth k until the kernel's 40-link limit, which never came (a hang).
        symlink(&a, a.join("up1")).unwrap();
        symlink(&a, a.join("up2")).unwrap();
        symlink(&a, a.join("sub").join("back")).unwrap();
        // Another class may link to this one: it gets the same images, as torchvision's.
        symlink(&a, root.join("b")).unwrap();
        let ds = ImageFolder::new(&root, Compose::new().then(ToTensor)).unwrap();
        assert_eq!(ds.classes(), ["a", "b"]);
        let names: Vec<_> = ds.samples().iter().map(|(p, l)| (p.clone(), *l)).collect();
        assert_eq!(
            names,
            [
                (a.join("sub").join("y.png"), 0),
                (a.join("x.png"), 0),
                (root.join("b").join("sub").join("y.png"), 1),
                (root.join("b").join("x.png"), 1),
            ]
        );
        // An "image" that is a device: reading /dev/zero never ends (memory grew until the
        // process was killed); it is refused as not a regular file, naming the path.
        let c = root.join("c");
        std::fs::create_dir_all(&c).unwrap();
        symlink("/dev/zero", c.join("zero.png")).unwrap();
        let ds = ImageFolder::new(&root, Compose::new().then(ToTensor)).unwrap();
        let e = ds.get(4).unwrap_err();
        assert!(matches!(e, Error::File { .. }), "{e}");
        assert!(
            e.to_string().contains("zero.png") && e.to_string().contains("not a regular file"),
            "{e}"
        );
        // A named pipe (made with mkfifo where it exists): reading it waited for a writer.
        if std::process::Command::new("mkfifo")
            .arg(c.join("pipe.png"))
            .status()
            .is_ok_and(|s| s.success())
        {
            let e = decode_file(c.join("pipe.png")).unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn augmentation_repeats_per_seed_epoch_and_index() {
        let root = tmp("aug");
        std::fs::create_dir_all(root.join("a")).unwrap();
        write_png(&root.join("a").join("x.png"), 9, 3, 50);
        let t = || {
            Compose::new()
                .then(RandomHorizontalFlip::new())
                .then(ToTensor)
        };
        let ds = ImageFolder::new(&root, t()).unwrap().with_seed(5);
        let ds2 = ImageFolder::new(&root, t()).unwrap().with_seed(5);
        let mut seen = std::collections::HashSet::new();
        for epoch in 0..16 {
            ds.set_epoch(epoch);
            ds2.set_epoch(epoch);
            let a = ds.get(0).unwrap().0;
            assert_eq!(a, ds2.get(0).unwrap().0);
            seen.insert(a[[1, 0, 0]].to_bits()); // green = column index: 0 or 8 when flipped
        }
        assert_eq!(seen.len(), 2, "both flipped and unflipped over 16 epochs");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn bad_folders_are_errors() {
        let root = tmp("bad");
        assert!(ImageFolder::new(root.join("missing"), Compose::new()).is_err());
        let e = ImageFolder::new(&root, Compose::new()).unwrap_err();
        assert!(e.to_string().contains("no class"), "{e}");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        write_png(&root.join("a").join("x.png"), 3, 3, 1);
        std::fs::write(root.join("b").join("y.txt"), "x").unwrap();
        let e = ImageFolder::new(&root, Compose::new()).unwrap_err();
        assert!(
            e.to_string().contains("without") && e.to_string().contains('b'),
            "{e}"
        );
        std::fs::write(root.join("b").join("y.jpg"), b"\xFF\xD8\xFF garbage").unwrap();
        // The scan succeeds (the first image is fine); the corrupt one errors with its path.
        let ds = ImageFolder::new(&root, Compose::new()).unwrap();
        let e = ds.get(1).unwrap_err();
        assert!(e.to_string().contains("y.jpg"), "{e}");
        // Images of different sizes without a fixed-size transform: a shape error, not a panic.
        write_png(&root.join("a").join("z.png"), 5, 2, 1);
        let ds = ImageFolder::new(&root, Compose::new()).unwrap();
        let e = ds.get(1).unwrap_err();
        assert!(e.to_string().contains("fixed-size"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    #[cfg(feature = "rayon")]
    fn loader_batches_repeat_whatever_the_threads() {
        use crate::data::{DataLoader, LoaderConfig};
        use crate::vision::transforms::RandomResizedCrop;
        let root = tmp("threads");
        for (class, value) in [("a", 30u8), ("b", 90), ("c", 160)] {
            std::fs::create_dir_all(root.join(class)).unwrap();
            for i in 0..3u32 {
                write_png(&root.join(class).join(format!("{i}.png")), 9 + i, 7, value);
            }
        }
        let t = Compose::new()
            .then(RandomResizedCrop::new(5))
            .then(RandomHorizontalFlip::new())
            .then(ToTensor);
        let ds = ImageFolder::new(&root, t).unwrap().with_seed(11);
        ds.set_epoch(3);
        let loader = DataLoader::new(&ds, LoaderConfig::new(4).shuffle(2)).unwrap();
        let run = |threads: usize| -> Vec<crate::data::Batch<f32>> {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| loader.epoch(0).collect::<Result<_>>().unwrap())
        };
        let one = run(1);
        let order = loader.order(0);
        // Each sample is what `get` gives for its index (seeded by seed, epoch and index).
        for (k, &index) in order.iter().enumerate() {
            let (b, i) = (k / 4, k % 4);
            let (x, label) = ds.get(index).unwrap();
            assert_eq!(one[b].labels[i], label);
            let got = &one[b].images.as_slice().unwrap()[i * 75..][..75];
            assert_eq!(got, x.as_slice().unwrap());
        }
        for threads in [2, 3] {
            let many = run(threads);
            for (a, b) in one.iter().zip(&many) {
                assert_eq!((&a.labels, &a.images), (&b.labels, &b.images));
            }
        }
        assert!(ds.failures().is_empty());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
