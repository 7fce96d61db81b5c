//! PNG and JPEG decoding through the `image` crate.

use super::Image;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The most pixels a decoded image may have: `2^28 / 3`, so that its RGB bytes stay within
/// the tensor size limit ([`crate::tensor::MAX_ELEMENTS`]). PIL refuses the same count as a
/// decompression bomb: a PNG of a few hundred KiB can declare 20000x20000 pixels.
pub const MAX_PIXELS: usize = crate::tensor::MAX_ELEMENTS / 3;

/// Decodes a PNG or JPEG file (the format is read from the bytes, not the extension) into an
/// RGB [`Image`]. Grey-scale, palette and alpha images become RGB, as torchvision's loader
/// does with PIL's `convert("RGB")` (alpha is dropped, not blended).
///
/// A missing, unreadable, truncated or non-image file is an [`Error::File`] naming the path,
/// and so is an image of more than [`MAX_PIXELS`] pixels (refused before decoding), and a
/// path that is not a regular file: reading a named pipe would wait for a writer forever, and
/// a device such as `/dev/zero` never ends (an [`ImageFolder`](super::ImageFolder) scan can
/// meet either under an image's name).
pub fn decode_file(path: impl AsRef<Path>) -> Result<Image> {
    let path = path.as_ref();
    let bytes = crate::io::read_regular_file(path, "cannot read image")?;
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
    let corrupt = |e: image::ImageError| err(format!("corrupt {format:?} image: {e}"));
    let reader = || image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let (w, h) = reader().into_dimensions().map_err(corrupt)?;
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_PIXELS as u64 {
        return Err(err(format!(
            "{w}x{h} pixels ({pixels}) are more than the limit of {MAX_PIXELS} (2^28 / 3)"
        )));
    }
    let decoded = reader().decode().map_err(corrupt)?;
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

    /// A PNG of `w x h` grey pixels with no pixel data (IHDR, an empty IDAT, IEND): enough for
    /// the dimensions, which are all a bomb needs to declare.
    fn png_header(w: u32, h: u32) -> Vec<u8> {
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut crc = flate2::Crc::new();
            crc.update(kind);
            crc.update(data);
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            c.extend_from_slice(&crc.sum().to_be_bytes());
            c
        };
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(b"IDAT", &[]));
        png.extend(chunk(b"IEND", &[]));
        png
    }

    #[test]
    fn an_image_of_too_many_pixels_is_refused_before_decoding() {
        // A 388 KB PNG of 20000x20000 grey pixels took 3 GB and more than a minute to decode;
        // its header alone is now enough to refuse it.
        let e = decode_bytes(&png_header(20_000, 20_000)).unwrap_err();
        assert!(matches!(e, Error::File { .. }), "{e}");
        let e = e.to_string();
        assert!(
            e.contains("20000x20000 pixels") && e.contains("limit"),
            "{e}"
        );
        // One pixel past the limit is refused, the limit itself goes on to decoding (where this
        // header-only file fails as corrupt).
        let over = decode_bytes(&png_header(MAX_PIXELS as u32 + 1, 1)).unwrap_err();
        assert!(over.to_string().contains("limit"), "{over}");
        let at = decode_bytes(&png_header(MAX_PIXELS as u32, 1)).unwrap_err();
        assert!(at.to_string().contains("corrupt"), "{at}");
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
