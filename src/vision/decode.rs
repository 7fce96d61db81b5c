//! PNG and JPEG decoding through the `image` crate.

use super::Image;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Decodes a PNG or JPEG file (the format is read from the bytes, not the extension) into an
/// RGB [`Image`]. Grey-scale, palette and alpha images become RGB, as torchvision's loader
/// does with PIL's `convert("RGB")` (alpha is dropped, not blended).
///
/// A missing, unreadable, truncated or non-image file is an [`Error::File`] naming the path.
pub fn decode_file(path: impl AsRef<Path>) -> Result<Image> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, "cannot read image", e))?;
    decode_named(&bytes, &path.display().to_string())
}

/// Decodes PNG or JPEG bytes into an RGB [`Image`]; errors name the source as `<bytes>`.
pub fn decode_bytes(bytes: &[u8]) -> Result<Image> {
    decode_named(bytes, "<bytes>")
}

fn decode_named(bytes: &[u8], name: &str) -> Result<Image> {
    let err = |message: String| Error::File {
        path: PathBuf::from(name),
        message,
    };
    let format = image::guess_format(bytes)
        .map_err(|_| err("not a PNG or JPEG image (unrecognised header)".into()))?;
    if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
        return Err(err(format!(
            "{format:?} images are not supported (PNG and JPEG are)"
        )));
    }
    let decoded = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| err(format!("corrupt {format:?} image: {e}")))?;
    let rgb = decoded.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    Image::from_rgb(w, h, rgb.into_raw()).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 7]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn png_round_trip_is_exact() {
        let img = decode_bytes(&png_bytes(5, 3)).unwrap();
        assert_eq!((img.width(), img.height()), (5, 3));
        assert_eq!(img.pixel(4, 2).unwrap(), [40, 40, 7]);
    }

    #[test]
    fn truncated_and_garbage_bytes_are_errors() {
        let png = png_bytes(8, 8);
        let e = decode_bytes(&png[..png.len() / 2]).unwrap_err();
        assert!(matches!(e, Error::File { .. }), "{e}");
        let e = decode_bytes(b"hello, not an image").unwrap_err();
        assert!(e.to_string().contains("not a PNG or JPEG"), "{e}");
    }

    #[test]
    fn file_errors_name_the_path() {
        let dir = std::env::temp_dir().join(format!("convnet-decode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.png");
        let e = decode_file(&missing).unwrap_err();
        assert!(e.to_string().contains("missing.png"), "{e}");
        let corrupt = dir.join("corrupt.jpg");
        std::fs::write(&corrupt, [0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F']).unwrap();
        let e = decode_file(&corrupt).unwrap_err();
        assert!(e.to_string().contains("corrupt.jpg"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
