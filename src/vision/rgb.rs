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

impl Image {
    /// An image from `height * width * 3` bytes in row-major RGB order.
    pub fn from_rgb(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        if width == 0 || height == 0 || data.len() != width * height * 3 {
            return Err(Error::input(
                "Image::from_rgb",
                format!(
                    "{} bytes for a {width}x{height} RGB image (expected {}, sizes above 0)",
                    data.len(),
                    width * height * 3
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
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// The `width x height` window whose top-left corner is at (`left`, `top`); pixels outside
    /// the image are black (torchvision pads a crop larger than its image with zeros).
    pub fn crop(&self, left: isize, top: isize, width: usize, height: usize) -> Image {
        let mut data = vec![0u8; width * height * 3];
        for y in 0..height {
            let sy = top + y as isize;
            if sy < 0 || sy >= self.height as isize {
                continue;
            }
            for x in 0..width {
                let sx = left + x as isize;
                if sx < 0 || sx >= self.width as isize {
                    continue;
                }
                let src = (sy as usize * self.width + sx as usize) * 3;
                let dst = (y * width + x) * 3;
                data[dst..dst + 3].copy_from_slice(&self.data[src..src + 3]);
            }
        }
        Image {
            width,
            height,
            data,
        }
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
        for (i, px) in self.data.chunks(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = px[c] as f32 / 255.0;
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
    fn crop_inside_and_padded() {
        let img = ramp(5, 4);
        let c = img.crop(1, 2, 3, 2);
        assert_eq!((c.width(), c.height()), (3, 2));
        assert_eq!(c.pixel(0, 0), img.pixel(1, 2));
        assert_eq!(c.pixel(2, 1), img.pixel(3, 3));
        let p = img.crop(-1, -1, 7, 6);
        assert_eq!(p.pixel(0, 0), [0, 0, 0]);
        assert_eq!(p.pixel(1, 1), img.pixel(0, 0));
        assert_eq!(p.pixel(6, 5), [0, 0, 0]);
    }

    #[test]
    fn flip_twice_is_identity_and_moves_columns() {
        let img = ramp(4, 3);
        let f = img.flip_horizontal();
        assert_eq!(f.pixel(0, 1), img.pixel(3, 1));
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
