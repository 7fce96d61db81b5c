//! Antialiased bilinear resampling, computed the way PIL's `Image.resize(..., BILINEAR)` does.
//!
//! torchvision resizes PIL images with PIL, so matching its preprocessing means matching PIL's
//! arithmetic, not just "bilinear":
//!
//! * the triangle filter is stretched by the reduction factor when downscaling (its support
//!   grows from 1 to `in / out` input pixels), which is the antialiasing;
//! * output pixel `o` is centred on input coordinate `(o + 0.5) * in / out`, and its taps are
//!   the input pixels whose centres fall within the stretched support, weights normalised to 1;
//! * the weights are fixed-point numbers with 22 fractional bits and every pass rounds to
//!   bytes: horizontal first, then vertical, each producing 8-bit pixels.

use super::Image;

/// Fractional bits of the fixed-point weights (32 bits minus 8 for the pixel, minus 2 spare).
const PRECISION_BITS: u32 = 22;

/// The taps of one output pixel: first input index and fixed-point weights.
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// The triangle (tent) filter of bilinear interpolation.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Taps for resampling `in_size` pixels to `out_size` (both above zero).
fn taps(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let stretch = scale.max(1.0);
    let support = stretch; // triangle support 1, stretched
    (0..out_size)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            // Truncation toward zero then clamping, as the C code's int casts do.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let raw: Vec<f64> = (lo..hi)
                .map(|i| triangle((i as f64 - center + 0.5) / stretch))
                .collect();
            let sum: f64 = raw.iter().sum();
            let one = (1u32 << PRECISION_BITS) as f64;
            let weights = raw
                .iter()
                .map(|&w| {
                    let w = if sum != 0.0 { w / sum } else { w };
                    // Round half away from zero, as the C code does.
                    (w * one + if w < 0.0 { -0.5 } else { 0.5 }) as i32
                })
                .collect();
            Taps { first: lo, weights }
        })
        .collect()
}

/// A weighted sum in fixed point, rounded and clamped to a byte.
fn to_byte(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes `img` to `width x height` with PIL's antialiased bilinear filter.
// Indexing is in bounds: `taps(n, m)` gives taps `first + k < n` (`hi` is clamped to `n`), rows
// are cut from an image of `w_in * h * 3` bytes, and `out` has `width * height * 3` bytes.
#[allow(clippy::indexing_slicing)]
pub(super) fn resize_bilinear(img: &Image, width: usize, height: usize) -> crate::Result<Image> {
    // The output, and the intermediate `width x img.height()` image, within the pixel limit.
    for (w, h) in [(width, height), (width, img.height())] {
        super::rgb::rgb_len(w, h).map_err(|m| crate::Error::input("Resize", m))?;
    }
    let mut current = img.clone();
    let half = 1i64 << (PRECISION_BITS - 1);
    if width != current.width() {
        let (w_in, h) = (current.width(), current.height());
        let src = current.as_bytes();
        let mut out = vec![0u8; width * h * 3];
        let tx = taps(w_in, width);
        for y in 0..h {
            let row = &src[y * w_in * 3..(y + 1) * w_in * 3];
            for (x, t) in tx.iter().enumerate() {
                for c in 0..3 {
                    let mut acc = half;
                    for (k, &w) in t.weights.iter().enumerate() {
                        acc += row[(t.first + k) * 3 + c] as i64 * w as i64;
                    }
                    out[(y * width + x) * 3 + c] = to_byte(acc);
                }
            }
        }
        current = Image::from_rgb(width, h, out)?;
    }
    if height != current.height() {
        let (w, h_in) = (current.width(), current.height());
        let src = current.as_bytes();
        let mut out = vec![0u8; w * height * 3];
        let ty = taps(h_in, height);
        for (y, t) in ty.iter().enumerate() {
            for i in 0..w * 3 {
                let mut acc = half;
                for (k, &wt) in t.weights.iter().enumerate() {
                    acc += src[(t.first + k) * w * 3 + i] as i64 * wt as i64;
                }
                out[y * w * 3 + i] = to_byte(acc);
            }
        }
        current = Image::from_rgb(w, height, out)?;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_stretch_when_downscaling() {
        let one = 1i64 << PRECISION_BITS;
        for (i, o) in [(10, 3), (7, 7), (3, 10), (256, 224), (500, 256)] {
            for t in taps(i, o) {
                let s: i64 = t.weights.iter().map(|&w| w as i64).sum();
                assert!((s - one).abs() <= t.weights.len() as i64, "{i}->{o}: {s}");
            }
        }
        // Reducing 10 -> 2 averages over ~5 input pixels per output (antialiasing); plain
        // bilinear would use 2.
        assert!(taps(10, 2)[0].weights.iter().filter(|&&w| w > 0).count() >= 5);
    }

    #[test]
    fn constant_image_stays_constant_and_same_size_is_identity() {
        let img = Image::from_rgb(9, 7, [17u8, 200, 3].repeat(63)).unwrap();
        let r = resize_bilinear(&img, 4, 13).unwrap();
        assert!(r.as_bytes().chunks(3).all(|p| p == [17, 200, 3]));
        let ramp: Vec<u8> = (0..9 * 7 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let img = Image::from_rgb(9, 7, ramp).unwrap();
        assert_eq!(resize_bilinear(&img, 9, 7).unwrap(), img);
    }

    #[test]
    fn halving_averages_pixel_pairs_with_tent_weights() {
        // 4 -> 2: output 0 is centred at 1.0 with support 2: taps 0..3 with weights
        // tent((i - 1 + 0.5) / 2) = 0.75, 0.75, 0.25 -> normalised 3/7, 3/7, 1/7.
        let img = Image::from_rgb(
            4,
            1,
            [0, 0, 0, 70, 70, 70, 140, 140, 140, 210, 210, 210].to_vec(),
        )
        .unwrap();
        let r = resize_bilinear(&img, 2, 1).unwrap();
        let expect0: f64 = (3.0 * 0.0 + 3.0 * 70.0 + 140.0) / 7.0; // 50
        assert_eq!(r.pixel(0, 0).unwrap()[0], expect0.round() as u8);
        // Output 1 centred at 3.0: taps 1..4 weights 0.25, 0.75, 0.75 -> (70 + 3*140 + 3*210)/7.
        let expect1: f64 = (70.0 + 3.0 * 140.0 + 3.0 * 210.0) / 7.0; // 160
        assert_eq!(r.pixel(1, 0).unwrap()[0], expect1.round() as u8);
    }
}
