//! torchvision parity of the ImageNet preprocessing: `Resize(256)`, `CenterCrop(224)`,
//! `ToTensor`, `Normalize` on a PNG and a JPEG written by scripts/make_vision_fixtures.py,
//! whose outputs (computed with PIL + torchvision) sit beside them.
#![cfg(feature = "image")]

use convnet::rng::Rng64;
use convnet::vision::decode_file;
use convnet::vision::transforms::{CenterCrop, Compose, Normalize, Resize, ToTensor};
use safetensors::SafeTensors;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vision")
        .join(name)
}

fn floats(st: &SafeTensors, name: &str) -> Vec<f64> {
    let t = st.tensor(name).unwrap();
    match t.dtype() {
        safetensors::Dtype::F32 => t
            .data()
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
            .collect(),
        safetensors::Dtype::F64 => t
            .data()
            .chunks(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        other => panic!("{name}: unexpected dtype {other:?}"),
    }
}

/// Max |ours - torchvision| over the stored subsample, and the largest per-channel mean
/// difference over the whole 224x224 output; also checks the decoded pixels' channel sums.
fn compare(image: &str, expected: &str) -> (f64, f64, f64) {
    let img = decode_file(fixture(image)).unwrap();
    let bytes = std::fs::read(fixture(expected)).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();

    let mut decoded = [0f64; 3];
    for px in img.as_bytes().chunks(3) {
        for c in 0..3 {
            decoded[c] += px[c] as f64;
        }
    }
    let n_px = (img.width() * img.height()) as f64;
    let decode_diff = floats(&st, "decoded_sum")
        .iter()
        .zip(decoded)
        .map(|(t, o)| (t - o).abs() / n_px)
        .fold(0.0, f64::max);

    let pre = Compose::new()
        .then(Resize::new(256))
        .then(CenterCrop::new(224))
        .then(ToTensor)
        .then(Normalize::imagenet());
    let x = pre.tensor(img, &mut Rng64::seed(0)).unwrap();
    assert_eq!(x.shape(), &[3, 224, 224]);

    let sub = floats(&st, "sub");
    assert_eq!(sub.len(), 3 * 32 * 32);
    let mut max_diff = 0f64;
    for c in 0..3 {
        for i in 0..32 {
            for j in 0..32 {
                let ours = x[[c, 7 * i, 7 * j]] as f64;
                let theirs = sub[(c * 32 + i) * 32 + j];
                max_diff = max_diff.max((ours - theirs).abs());
            }
        }
    }
    let sums = floats(&st, "channel_sum");
    let mean_diff = (0..3)
        .map(|c| {
            let ours: f64 = x
                .index_axis(ndarray::Axis(0), c)
                .iter()
                .map(|&v| v as f64)
                .sum();
            (ours - sums[c]).abs() / (224.0 * 224.0)
        })
        .fold(0.0, f64::max);
    (max_diff, mean_diff, decode_diff)
}

/// One 8-bit level after `Normalize`: `1 / 255 / std`, at most `1 / 255 / 0.224`.
const ONE_LEVEL: f64 = 1.0 / 255.0 / 0.224;

#[test]
fn png_preprocessing_matches_torchvision() {
    let (max_diff, mean_diff, decode_diff) = compare("photo.png", "photo_png.safetensors");
    println!("PNG: max |diff| {max_diff:.3e}, channel mean diff {mean_diff:.3e}");
    // PNG decoding is lossless and the resampler reproduces PIL's fixed-point arithmetic, so
    // the bytes agree and only float rounding of ToTensor/Normalize is left.
    assert_eq!(decode_diff, 0.0);
    assert!(max_diff < 1e-5, "max |diff| {max_diff}");
    assert!(mean_diff < 1e-6, "channel mean diff {mean_diff}");
}

#[test]
fn jpeg_preprocessing_matches_torchvision() {
    let (max_diff, mean_diff, decode_diff) = compare("photo.jpg", "photo_jpg.safetensors");
    println!(
        "JPEG: max |diff| {max_diff:.3e} ({:.2} levels), channel mean diff {mean_diff:.3e}, decoded mean diff {decode_diff:.3e} levels",
        max_diff / ONE_LEVEL
    );
    // JPEG decoders may round the inverse DCT and chroma upsampling differently (PIL uses
    // libjpeg-turbo, the image crate zune-jpeg), so pixels can differ by a few levels.
    assert!(
        decode_diff < 0.5,
        "decoded means differ by {decode_diff} levels"
    );
    assert!(max_diff < 4.0 * ONE_LEVEL, "max |diff| {max_diff}");
    assert!(mean_diff < 0.5 * ONE_LEVEL, "channel mean diff {mean_diff}");
}
