//! Transforms composable like torchvision's: each is a small struct with an `apply` method,
//! and [`Compose`] chains them.
//!
//! The geometric transforms ([`Resize`], [`CenterCrop`], [`RandomResizedCrop`],
//! [`RandomHorizontalFlip`]) work on 8-bit [`Image`]s, as torchvision's work on PIL images,
//! so that rounding happens where it happens there; [`ToTensor`] turns the image into
//! `[3, H, W]` floats in `[0, 1]` and [`Normalize`] works on that tensor. Random transforms
//! draw from the [`Rng64`] passed to `apply`, so a seed repeats a run.

use super::resample::resize_bilinear;
use super::Image;
use crate::error::{Error, Result};
use crate::rng::Rng64;
use crate::tensor::Tensor;

/// Per-channel mean of the ImageNet training images (RGB, pixels in `[0, 1]`), as used by
/// every torchvision classifier.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// Per-channel standard deviation of the ImageNet training images (RGB, pixels in `[0, 1]`).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// What flows through a [`Compose`]: an 8-bit image, or a `[C, H, W]` tensor after
/// [`ToTensor`].
#[derive(Clone, Debug)]
pub enum Sample {
    /// An 8-bit RGB image.
    Image(Image),
    /// A `[C, H, W]` float tensor.
    Tensor(Tensor<f32>),
}

impl Sample {
    fn name(&self) -> &'static str {
        match self {
            Sample::Image(_) => "an image",
            Sample::Tensor(_) => "a tensor",
        }
    }
}

/// One step of a preprocessing pipeline.
pub trait Transform: Send + Sync {
    /// Applies the step; random steps draw from `rng`. Giving a step the wrong kind of
    /// sample (a tensor to `Resize`, an image to `Normalize`) is an [`Error::InvalidInput`].
    fn apply_sample(&self, x: Sample, rng: &mut Rng64) -> Result<Sample>;
}

fn expect_image(what: &str, x: Sample) -> Result<Image> {
    match x {
        Sample::Image(img) => Ok(img),
        other => Err(Error::input(
            what,
            format!(
                "expects an image (place it before ToTensor), got {}",
                other.name()
            ),
        )),
    }
}

/// A chain of transforms applied in order, like `torchvision.transforms.Compose`.
#[derive(Default)]
pub struct Compose {
    steps: Vec<Box<dyn Transform>>,
}

impl Compose {
    /// An empty chain.
    pub fn new() -> Self {
        Compose::default()
    }

    /// The chain with `step` appended.
    pub fn then(mut self, step: impl Transform + 'static) -> Self {
        self.steps.push(Box::new(step));
        self
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True for the empty chain.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs every step on an image.
    pub fn apply(&self, img: Image, rng: &mut Rng64) -> Result<Sample> {
        self.apply_sample(Sample::Image(img), rng)
    }

    /// Runs every step and returns the tensor; a chain that ends with an image (no
    /// [`ToTensor`]) gets one final `ToTensor`.
    pub fn tensor(&self, img: Image, rng: &mut Rng64) -> Result<Tensor<f32>> {
        Ok(match self.apply(img, rng)? {
            Sample::Tensor(t) => t,
            Sample::Image(img) => img.to_tensor(),
        })
    }
}

impl Transform for Compose {
    fn apply_sample(&self, mut x: Sample, rng: &mut Rng64) -> Result<Sample> {
        for step in &self.steps {
            x = step.apply_sample(x, rng)?;
        }
        Ok(x)
    }
}

/// Output size of resizing the shorter side of `(w, h)` to `size`, keeping the aspect ratio
/// (the longer side is truncated, as torchvision computes it).
fn shorter_side_to(w: usize, h: usize, size: usize) -> (usize, usize) {
    if w <= h {
        (size, (size as f64 * h as f64 / w as f64) as usize)
    } else {
        ((size as f64 * w as f64 / h as f64) as usize, size)
    }
}

/// Resizes with PIL's antialiased bilinear filter: `Resize::new(n)` scales the shorter side to
/// `n` keeping the aspect ratio (torchvision's `Resize(n)`), `Resize::exact(w, h)` to a fixed
/// size (torchvision's `Resize((h, w))`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resize {
    shorter: Option<usize>,
    exact: Option<(usize, usize)>,
}

impl Resize {
    /// Shorter side to `size` pixels.
    pub fn new(size: usize) -> Self {
        Resize {
            shorter: Some(size),
            exact: None,
        }
    }

    /// Exactly `width x height`.
    pub fn exact(width: usize, height: usize) -> Self {
        Resize {
            shorter: None,
            exact: Some((width, height)),
        }
    }

    /// Resizes one image.
    pub fn apply(&self, img: &Image) -> Result<Image> {
        let (w, h) = match (self.shorter, self.exact) {
            (Some(s), _) => shorter_side_to(img.width(), img.height(), s),
            (None, Some(wh)) => wh,
            (None, None) => unreachable!("constructors set one of the two"),
        };
        if w == 0 || h == 0 {
            return Err(Error::input(
                "Resize",
                format!(
                    "resizing {}x{} gives an empty {w}x{h} image",
                    img.width(),
                    img.height()
                ),
            ));
        }
        resize_bilinear(img, w, h)
    }
}

impl Transform for Resize {
    fn apply_sample(&self, x: Sample, _: &mut Rng64) -> Result<Sample> {
        Ok(Sample::Image(self.apply(&expect_image("Resize", x)?)?))
    }
}

/// Crops the centre `width x height` window (a crop larger than the image is padded with
/// black, as torchvision pads it). The offset is rounded half to even like Python's `round`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CenterCrop {
    width: usize,
    height: usize,
}

impl CenterCrop {
    /// A square `size x size` crop.
    pub fn new(size: usize) -> Self {
        CenterCrop {
            width: size,
            height: size,
        }
    }

    /// A `width x height` crop.
    pub fn rect(width: usize, height: usize) -> Self {
        CenterCrop { width, height }
    }

    /// Crops one image.
    pub fn apply(&self, img: &Image) -> Result<Image> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::config("CenterCrop", "the crop size must be above 0"));
        }
        let offset = |full: usize, crop: usize| -> isize {
            if crop > full {
                // torchvision pads (crop - full) / 2 (floored) on the leading side.
                -(((crop - full) / 2) as isize)
            } else {
                ((full - crop) as f64 / 2.0).round_ties_even() as isize
            }
        };
        img.crop(
            offset(img.width(), self.width),
            offset(img.height(), self.height),
            self.width,
            self.height,
        )
    }
}

impl Transform for CenterCrop {
    fn apply_sample(&self, x: Sample, _: &mut Rng64) -> Result<Sample> {
        Ok(Sample::Image(self.apply(&expect_image("CenterCrop", x)?)?))
    }
}

/// Crops a random part of the image and resizes it to `size x size`, torchvision's
/// `RandomResizedCrop`: the part covers a fraction of the area drawn uniformly from `scale`,
/// with an aspect ratio drawn log-uniformly from `ratio`; after ten failed draws it falls
/// back to the largest centred crop whose ratio is within `ratio`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomResizedCrop {
    size: usize,
    scale: (f64, f64),
    ratio: (f64, f64),
}

impl RandomResizedCrop {
    /// torchvision's defaults: `scale = (0.08, 1.0)`, `ratio = (3/4, 4/3)`.
    pub fn new(size: usize) -> Self {
        RandomResizedCrop {
            size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }

    /// Another range of area fractions (`0 < lo <= hi <= 1`).
    pub fn with_scale(mut self, lo: f64, hi: f64) -> Self {
        self.scale = (lo, hi);
        self
    }

    /// Another range of aspect ratios (`0 < lo <= hi`).
    pub fn with_ratio(mut self, lo: f64, hi: f64) -> Self {
        self.ratio = (lo, hi);
        self
    }

    fn check(&self) -> Result<()> {
        let (s0, s1) = self.scale;
        let (r0, r1) = self.ratio;
        let ok = self.size > 0 && s0 > 0.0 && s0 <= s1 && s1 <= 1.0 && r0 > 0.0 && r0 <= r1;
        if ok {
            Ok(())
        } else {
            Err(Error::config(
                "RandomResizedCrop",
                format!(
                    "size {} scale {:?} ratio {:?}: need size > 0, 0 < scale.0 <= scale.1 <= 1, 0 < ratio.0 <= ratio.1",
                    self.size, self.scale, self.ratio
                ),
            ))
        }
    }

    /// The crop window `(left, top, width, height)` for an image of `width x height`.
    pub fn window(
        &self,
        width: usize,
        height: usize,
        rng: &mut Rng64,
    ) -> (usize, usize, usize, usize) {
        let area = (width * height) as f64;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        for _ in 0..10 {
            let target = area * (self.scale.0 + (self.scale.1 - self.scale.0) * rng.uniform());
            let aspect = (lr0 + (lr1 - lr0) * rng.uniform()).exp();
            let w = (target * aspect).sqrt().round_ties_even() as usize;
            let h = (target / aspect).sqrt().round_ties_even() as usize;
            if 0 < w && w <= width && 0 < h && h <= height {
                let top = rng.below(height - h + 1);
                let left = rng.below(width - w + 1);
                return (left, top, w, h);
            }
        }
        let in_ratio = width as f64 / height as f64;
        let (w, h) = if in_ratio < self.ratio.0 {
            (
                width,
                ((width as f64 / self.ratio.0).round_ties_even() as usize).max(1),
            )
        } else if in_ratio > self.ratio.1 {
            (
                ((height as f64 * self.ratio.1).round_ties_even() as usize).max(1),
                height,
            )
        } else {
            (width, height)
        };
        ((width - w) / 2, (height - h) / 2, w, h)
    }

    /// Crops and resizes one image.
    pub fn apply(&self, img: &Image, rng: &mut Rng64) -> Result<Image> {
        self.check()?;
        let (left, top, w, h) = self.window(img.width(), img.height(), rng);
        let part = img.crop(left as isize, top as isize, w, h)?;
        resize_bilinear(&part, self.size, self.size)
    }
}

impl Transform for RandomResizedCrop {
    fn apply_sample(&self, x: Sample, rng: &mut Rng64) -> Result<Sample> {
        Ok(Sample::Image(
            self.apply(&expect_image("RandomResizedCrop", x)?, rng)?,
        ))
    }
}

/// Mirrors the image left-right with probability `p` (0.5 by default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RandomHorizontalFlip {
    p: f64,
}

impl Default for RandomHorizontalFlip {
    fn default() -> Self {
        RandomHorizontalFlip { p: 0.5 }
    }
}

impl RandomHorizontalFlip {
    /// Flips with probability 0.5.
    pub fn new() -> Self {
        Self::default()
    }

    /// Flips with probability `p` (in `[0, 1]`).
    pub fn with_p(p: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::config(
                "RandomHorizontalFlip",
                format!("probability {p} is not in [0, 1]"),
            ));
        }
        Ok(RandomHorizontalFlip { p })
    }

    /// Flips one image or not.
    pub fn apply(&self, img: Image, rng: &mut Rng64) -> Image {
        if rng.uniform() < self.p {
            img.flip_horizontal()
        } else {
            img
        }
    }
}

impl Transform for RandomHorizontalFlip {
    fn apply_sample(&self, x: Sample, rng: &mut Rng64) -> Result<Sample> {
        Ok(Sample::Image(
            self.apply(expect_image("RandomHorizontalFlip", x)?, rng),
        ))
    }
}

/// Turns an 8-bit image into `[3, H, W]` floats in `[0, 1]`, torchvision's `ToTensor`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToTensor;

impl ToTensor {
    /// Converts one image.
    pub fn apply(&self, img: &Image) -> Tensor<f32> {
        img.to_tensor()
    }
}

impl Transform for ToTensor {
    fn apply_sample(&self, x: Sample, _: &mut Rng64) -> Result<Sample> {
        Ok(Sample::Tensor(expect_image("ToTensor", x)?.to_tensor()))
    }
}

/// Subtracts a per-channel mean and divides by a per-channel standard deviation:
/// `out[c] = (x[c] - mean[c]) / std[c]`, torchvision's `Normalize`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Normalize {
    /// Per-channel mean and standard deviation (same length, every std above 0).
    pub fn new(mean: &[f32], std: &[f32]) -> Result<Self> {
        if mean.len() != std.len()
            || mean.is_empty()
            || std.iter().any(|&s| s <= 0.0 || !s.is_finite())
        {
            return Err(Error::config(
                "Normalize",
                format!("mean {mean:?} and std {std:?}: need equal lengths and std > 0"),
            ));
        }
        Ok(Normalize {
            mean: mean.to_vec(),
            std: std.to_vec(),
        })
    }

    /// [`IMAGENET_MEAN`] and [`IMAGENET_STD`].
    pub fn imagenet() -> Self {
        Normalize {
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        }
    }

    /// Normalises a `[C, H, W]` tensor whose `C` matches the mean's length.
    pub fn apply(&self, mut x: Tensor<f32>) -> Result<Tensor<f32>> {
        if x.ndim() != 3 || x.shape().first() != Some(&self.mean.len()) {
            return Err(Error::shape(
                "Normalize",
                format!("[{}, H, W]", self.mean.len()),
                x.shape(),
            ));
        }
        for ((mut plane, &m), &s) in x.outer_iter_mut().zip(&self.mean).zip(&self.std) {
            plane.mapv_inplace(|v| (v - m) / s);
        }
        Ok(x)
    }
}

impl Transform for Normalize {
    fn apply_sample(&self, x: Sample, _: &mut Rng64) -> Result<Sample> {
        match x {
            Sample::Tensor(t) => Ok(Sample::Tensor(self.apply(t)?)),
            other => Err(Error::input(
                "Normalize",
                format!(
                    "expects a tensor (place it after ToTensor), got {}",
                    other.name()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> Image {
        let data = (0..w * h * 3).map(|i| (i * 13 % 256) as u8).collect();
        Image::from_rgb(w, h, data).unwrap()
    }

    #[test]
    fn resize_keeps_aspect_with_truncation() {
        assert_eq!(shorter_side_to(500, 375, 256), (341, 256)); // 256*500/375 = 341.33
        assert_eq!(shorter_side_to(375, 500, 256), (256, 341));
        let r = Resize::new(4).apply(&ramp(10, 6)).unwrap();
        assert_eq!((r.width(), r.height()), (6, 4)); // 4*10/6 = 6.67 -> 6
    }

    #[test]
    fn center_crop_rounds_half_to_even() {
        // (7 - 4) / 2 = 1.5 -> 2 ; (6 - 3) / 2 = 1.5 -> 2 ; (8 - 3) / 2 = 2.5 -> 2.
        let img = ramp(7, 8);
        let c = CenterCrop::rect(4, 3).apply(&img).unwrap();
        assert_eq!(c.pixel(0, 0).unwrap(), img.pixel(2, 2).unwrap());
        let img = ramp(6, 6);
        let c = CenterCrop::new(3).apply(&img).unwrap();
        assert_eq!(c.pixel(0, 0).unwrap(), img.pixel(2, 2).unwrap());
        // Larger than the image: padded, (5 - 2) // 2 = 1 leading black column.
        let img = ramp(2, 2);
        let c = CenterCrop::new(5).apply(&img).unwrap();
        assert_eq!(c.pixel(1, 1).unwrap(), img.pixel(0, 0).unwrap());
        assert_eq!(c.pixel(0, 0).unwrap(), [0, 0, 0]);
    }

    #[test]
    fn random_resized_crop_windows_obey_scale_ratio_and_bounds() {
        let t = RandomResizedCrop::new(8);
        let mut rng = Rng64::seed(1);
        let mut fractions = Vec::new();
        for _ in 0..2000 {
            let (l, tp, w, h) = t.window(200, 120, &mut rng);
            assert!(l + w <= 200 && tp + h <= 120 && w > 0 && h > 0);
            let f = (w * h) as f64 / (200.0 * 120.0);
            fractions.push(f);
            let r = w as f64 / h as f64;
            // Rounding w and h to integers can move the ratio slightly outside the range.
            assert!(r > 0.75 * 0.9 && r < 4.0 / 3.0 * 1.1, "ratio {r}");
        }
        let mean = fractions.iter().sum::<f64>() / fractions.len() as f64;
        // Uniform on (0.08, 1) has mean 0.54; large areas with a ratio far from the image's
        // (5:3) do not fit and are redrawn, so accepted windows average less.
        assert!(mean > 0.25 && mean < 0.54, "mean area fraction {mean}");
        assert!(fractions.iter().any(|&f| f < 0.15) && fractions.iter().any(|&f| f > 0.7));
    }

    #[test]
    fn random_resized_crop_repeats_with_a_seed_and_full_square_equals_resize() {
        let img = ramp(30, 20);
        let t = RandomResizedCrop::new(10);
        let a = t.apply(&img, &mut Rng64::seed(7)).unwrap();
        let b = t.apply(&img, &mut Rng64::seed(7)).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.width(), a.height()), (10, 10));
        let sq = ramp(16, 16);
        let full = RandomResizedCrop::new(5)
            .with_scale(1.0, 1.0)
            .with_ratio(1.0, 1.0);
        let r = full.apply(&sq, &mut Rng64::seed(3)).unwrap();
        assert_eq!(r, Resize::exact(5, 5).apply(&sq).unwrap());
        // A ratio no draw can satisfy on this image falls back to a centred crop.
        // On a 10x2 image a height of at most 2 needs area / ratio < 6.25, but the smallest
        // area (1.6) over the largest ratio (0.2) is 8: every draw fails.
        let narrow = RandomResizedCrop::new(4).with_ratio(0.1, 0.2);
        for seed in 0..20 {
            let win = narrow.window(10, 2, &mut Rng64::seed(seed));
            assert_eq!(win, (4, 0, 1, 2)); // h = 2, w = round(2 * 0.2) = 0 -> at least 1
        }
        assert!(RandomResizedCrop::new(4)
            .with_scale(0.5, 0.2)
            .apply(&sq, &mut Rng64::seed(0))
            .is_err());
    }

    #[test]
    fn horizontal_flip_rate_and_seed() {
        let img = ramp(5, 2);
        let t = RandomHorizontalFlip::new();
        let mut rng = Rng64::seed(11);
        let flipped = (0..1000)
            .filter(|_| t.apply(img.clone(), &mut rng) != img)
            .count();
        assert!((430..570).contains(&flipped), "{flipped} of 1000");
        let never = RandomHorizontalFlip::with_p(0.0).unwrap();
        assert_eq!(never.apply(img.clone(), &mut rng), img);
        let always = RandomHorizontalFlip::with_p(1.0).unwrap();
        assert_eq!(always.apply(img.clone(), &mut rng), img.flip_horizontal());
        assert!(RandomHorizontalFlip::with_p(1.5).is_err());
    }

    #[test]
    fn normalize_and_compose_order_errors() {
        let img = Image::from_rgb(1, 1, vec![255, 0, 128]).unwrap();
        let x = Compose::new()
            .then(ToTensor)
            .then(Normalize::imagenet())
            .tensor(img.clone(), &mut Rng64::seed(0))
            .unwrap();
        assert!((x[[0, 0, 0]] - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((x[[1, 0, 0]] - (0.0 - 0.456) / 0.224).abs() < 1e-6);
        assert!((x[[2, 0, 0]] - (128.0 / 255.0 - 0.406) / 0.225).abs() < 1e-6);
        let bad = Compose::new().then(ToTensor).then(Resize::new(4));
        assert!(bad.apply(img.clone(), &mut Rng64::seed(0)).is_err());
        let bad = Compose::new().then(Normalize::imagenet());
        assert!(bad.apply(img, &mut Rng64::seed(0)).is_err());
        assert!(Normalize::new(&[0.5], &[0.0]).is_err());
        assert!(Normalize::new(&[0.5, 0.5], &[1.0]).is_err());
        assert!(Normalize::imagenet()
            .apply(crate::tensor::zeros(&[1, 2, 2]))
            .is_err());
    }
}
