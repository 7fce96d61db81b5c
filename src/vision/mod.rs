//! Images: PNG/JPEG decoding, torchvision-style transforms, `ImageFolder` and CIFAR.
//!
//! Available with the `image` cargo feature (on by default).
//!
//! * [`Image`] — an 8-bit RGB image, `H x W x 3` bytes, the way PIL holds one.
//! * [`decode_file`] / [`decode_bytes`] — PNG or JPEG (grey-scale and alpha become RGB, as
//!   torchvision's default loader does with `convert("RGB")`).
//! * [`transforms`] — `Resize`, `CenterCrop`, `RandomResizedCrop`, `RandomHorizontalFlip`,
//!   `ToTensor`, `Normalize`, chained with [`transforms::Compose`]. Resizing follows PIL's
//!   antialiased bilinear filter, which is what torchvision applies to PIL images.
//! * [`ImageFolder`] — one sub-folder per class; [`Cifar`] — the CIFAR-10/100 binary files.
//!   Both are [`crate::data::Dataset`]s.
//! * [`imagenet_classes`] — the 1,000 ImageNet class names, in torchvision's order.
//!
//! The ImageNet preprocessing torchvision documents for its classifiers:
//!
//! ```no_run
//! use convnet::vision::transforms::*;
//! use convnet::vision::decode_file;
//! # fn main() -> convnet::Result<()> {
//! let preprocess = Compose::new()
//!     .then(Resize::new(256))
//!     .then(CenterCrop::new(224))
//!     .then(ToTensor)
//!     .then(Normalize::imagenet());
//! let image = decode_file("photo.jpg")?;
//! let x = preprocess.tensor(image, &mut convnet::rng::Rng64::seed(0))?; // [3, 224, 224]
//! assert_eq!(x.shape(), &[3, 224, 224]);
//! # Ok(())
//! # }
//! ```
//!
//! Image files and dataset indices reach everything here: no `unwrap`, `expect` or
//! unchecked indexing (the lints below keep it so; an `allow` names its invariant).
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod cifar;
mod classes;
mod decode;
mod folder;
mod resample;
mod rgb;
pub mod transforms;

pub use cifar::{Cifar, CifarKind, CIFAR_IMAGE_BYTES};
pub use classes::{imagenet_classes, IMAGENET_CLASSES_TXT};
pub use decode::{decode_bytes, decode_file, MAX_PIXELS};
pub use folder::{ImageFolder, IMAGE_EXTENSIONS};
pub use rgb::Image;
pub use transforms::{IMAGENET_MEAN, IMAGENET_STD};
