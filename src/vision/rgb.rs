//! The 8-bit RGB image the transforms work on.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// An 8-bit RGB image stored row by row, three bytes per pixel (`H x W x 3`), as PIL holds an
/// `"RGB"` image. The geometric transforms work on this type so that their rounding matches
/// torchvision's on PIL images; [`Image::to_tensor`] gives the `[3, H, W]` floats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

/// The bytes of a `width x height` RGB image: `width * height * 3`, or why there can be no
/// such image (a zero side, or more than [`MAX_PIXELS`](super::MAX_PIXELS) pixels, which also
/// keeps the product from overflowing).
pub(super) fn rgb_len(width: usize, height: usize) -> std::result::Result<usize, String> {
    let limit = super::MAX_PIXELS;
    match width.checked_mul(height) {
        Some(0) => Err(format!("a {width}x{height} image holds no pixels")),
        Some(pixels) if pixels <= limit => Ok(pixels * 3),
        pixels => Err(format!(
            "a {width}x{height} image ({} pixels) is larger than the limit of {limit} pixels \
             (2^28 / 3)",
            pixels.map_or_else(|| "more than 2^64".to_string(), |p| p.to_string())
        )),
    }
}

impl Image {
    /// An image from `height * width * 3` bytes in row-major RGB order. Sides of zero, more
    /// than [`MAX_PIXELS`](super::MAX_PIXELS) pixels, or a byte count that differs are an
    /// [`Error::InvalidInput`].
    pub fn from_rgb(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        let expected = rgb_len(width, height).map_err(|m| Error::input("Image::from_rgb", m))?;
        if data.len() != expected {
            return Err(Error::input(
                "Image::from_rgb",
                format!(
                    "{} bytes for a {width}x{height} RGB image (expected {expected})",
                    data.len(),
                ),
            ));
        }
        Ok(Image {
            width,
            height,
            data,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The bytes, row-major, `R, G, B` per pixel.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// The pixel at column `x`, row `y`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidInput`] for a position outside the image.
    pub fn pixel(&self, x: usize, y: usize) -> crate::Result<[u8; 3]> {
        let px = (x < self.width)
            .then(|| y.checked_mul(self.width)?.checked_add(x)?.checked_mul(3))
            .flatten()
            .and_then(|i| self.data.get(i..i.checked_add(3)?));
        match px {
            Some(&[r, g, b]) => Ok([r, g, b]),
            _ => Err(crate::Error::input(
                "Image::pixel",
                format!(
                    "({x}, {y}) lies outside the {}x{} image",
                    self.width, self.height
                ),
            )),
        }
    }

    /// The `width x height` window whose top-left corner is at (`left`, `top`); pixels outside
    /// the image are black (torchvision pads a crop larger than its image with zeros).
    ///
    /// A window with a zero side or of more than [`MAX_PIXELS`](super::MAX_PIXELS) pixels is
    /// an [`Error::InvalidInput`].
    pub fn crop(&self, left: isize, top: isize, width: usize, height: usize) -> Result<Image> {
        let len = rgb_len(width, height).map_err(|m| Error::input("Image::crop", m))?;
        let mut data = vec![0u8; len];
        for y in 0..height {
            // Both sides are at most 2^28 (the pixel limit), so none of these sums overflows
            // unless `top` or `left` lies within 2^28 of the ends of `isize`: checked.
            let Some(sy) = top.checked_add(y as isize) else {
                continue;
            };
            if sy < 0 || sy >= self.height as isize {
                continue;
            }
            for x in 0..width {
                let Some(sx) = left.checked_add(x as isize) else {
                    continue;
                };
                if sx < 0 || sx >= self.width as isize {
                    continue;
                }
                let src = (sy as usize * self.width + sx as usize) * 3;
                let dst = (y * width + x) * 3;
                // In bounds: (sx, sy) lies inside this image and (x, y) inside the crop.
                if let (Some(d), Some(s)) =
                    (data.get_mut(dst..dst + 3), self.data.get(src..src + 3))
                {
                    d.copy_from_slice(s);
                }
            }
        }
        Ok(Image {
            width,
            height,
            data,
        })
    }

    /// The mirror image (left and right swapped).
    pub fn flip_horizontal(&self) -> Image {
        let mut data = Vec::with_capacity(self.data.len());
        for row in self.data.chunks(self.width * 3) {
            for px in row.chunks(3).rev() {
                data.extend_from_slice(px);
            }
        }
        Image {
            width: self.width,
            height: self.height,
            data,
        }
    }

    /// `[3, H, W]` floats in `[0, 1]` (each byte divided by 255), as torchvision's `ToTensor`.
    pub fn to_tensor(&self) -> Tensor<f32> {
        let plane = self.width * self.height;
        let mut out = vec![0f32; 3 * plane];
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (((px, r), g), b) in self.data.chunks_exact(3).zip(r).zip(g).zip(b) {
            if let &[pr, pg, pb] = px {
                (*r, *g, *b) = (pr as f32 / 255.0, pg as f32 / 255.0, pb as f32 / 255.0);
            }
        }
        crate::tensor::from_vec(&[3, self.height, self.width], out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize) -> Image {
        let data = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
        Image::from_rgb(w, h, data).unwrap()
    }

    #[test]
    fn wrong_byte_count_is_an_error() {
        assert!(Image::from_rgb(2, 2, vec![0; 11]).is_err());
        assert!(Image::from_rgb(0, 2, vec![]).is_err());
    }

    #[test]
    fn sizes_that_overflow_or_exceed_the_pixel_limit_are_errors() {
        // 2^62 x 4 x 3 wraps to 0 bytes: an empty buffer used to pass as a 2^62 x 4 image.
        let e = Image::from_rgb(1 << 62, 4, vec![]).unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
        assert!(e.to_string().contains("limit"), "{e}");
        let e = Image::from_rgb(usize::MAX, 2, vec![]).unwrap_err();
        assert!(e.to_string().contains("more than 2^64"), "{e}");
        let img = ramp(5, 4);
        // A crop of 2^40 x 2^40 pixels used to abort allocating; of usize::MAX x 2 to overflow.
        for (w, h) in [(1 << 40, 1 << 40), (usize::MAX, 2), (0, 3), (3, 0)] {
            let e = img.crop(0, 0, w, h).unwrap_err();
            assert!(matches!(e, Error::InvalidInput { .. }), "{w}x{h}: {e}");
        }
        // Offsets at the ends of isize give a black crop, not an overflow.
        let far = img.crop(isize::MAX, isize::MIN, 2, 2).unwrap();
        assert_eq!(far.as_bytes(), &[0; 12]);
        let near = img.crop(isize::MAX - 1, 0, 3, 1).unwrap();
        assert_eq!(near.as_bytes(), &[0; 9]);
    }

    #[test]
    fn a_pixel_outside_the_image_is_an_error() {
        let img = ramp(5, 4);
        assert_eq!(img.pixel(4, 3).unwrap(), [57, 58, 59]);
        // x past the width used to read the next row's pixel; y past the height panicked.
        for (x, y) in [(5, 0), (0, 4), (usize::MAX, 0), (0, usize::MAX)] {
            let err = img.pixel(x, y).unwrap_err();
            assert!(err.to_string().contains("outside the 5x4 image"), "{err}");
        }
    }

    #[test]
    fn crop_inside_and_padded() {
        let img = ramp(5, 4);
        let c = img.crop(1, 2, 3, 2).unwrap();
        assert_eq!((c.width(), c.height()), (3, 2));
        assert_eq!(c.pixel(0, 0).unwrap(), img.pixel(1, 2).unwrap());
        assert_eq!(c.pixel(2, 1).unwrap(), img.pixel(3, 3).unwrap());
        let p = img.crop(-1, -1, 7, 6).unwrap();
        assert_eq!(p.pixel(0, 0).unwrap(), [0, 0, 0]);
        assert_eq!(p.pixel(1, 1).unwrap(), img.pixel(0, 0).unwrap());
        assert_eq!(p.pixel(6, 5).unwrap(), [0, 0, 0]);
    }

    #[test]
    fn flip_twice_is_identity_and_moves_columns() {
        let img = ramp(4, 3);
        let f = img.flip_horizontal();
        assert_eq!(f.pixel(0, 1).unwrap(), img.pixel(3, 1).unwrap());
        assert_eq!(f.flip_horizontal(), img);
    }

    #[test]
    fn to_tensor_is_chw_over_255() {
        let img = Image::from_rgb(2, 1, vec![255, 0, 51, 0, 102, 255]).unwrap();
        let t = img.to_tensor();
        assert_eq!(t.shape(), &[3, 1, 2]);
        assert_eq!(t[[0, 0, 0]], 1.0);
        assert_eq!(t[[1, 0, 1]], 0.4);
        assert_eq!(t[[2, 0, 0]], 0.2);
        assert_eq!(t[[2, 0, 1]], 1.0);
    }
}
