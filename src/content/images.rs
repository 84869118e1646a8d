//! Uploaded images: refused before decoding when the bytes are not JPEG, PNG, WebP or
//! GIF, too large, or declare too many pixels (a decompression bomb is a few KB that
//! declares gigapixels); decoded whole within memory limits (a truncated or damaged
//! file is an error, not a grey half-picture); then resized once into the widths a
//! page's `srcset` offers. Named by the hash of their bytes, so a URL never shows
//! another image and browsers and edges may keep it forever.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};
use sha2::{Digest, Sha256};

/// Widths of the resized copies, for `srcset` (those narrower than the image).
pub const VARIANT_WIDTHS: [u32; 3] = [480, 960, 1600];
/// At most this many pixels (a 40-megapixel photo), and this many a side.
pub const MAX_PIXELS: u64 = 40_000_000;
pub const MAX_SIDE: u32 = 16_384;
/// JPEG quality of resized copies.
const JPEG_QUALITY: u8 = 82;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Gif,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Jpeg, Format::Png, Format::Webp, Format::Gif];

    pub fn ext(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Gif => "gif",
        }
    }

    pub fn from_ext(ext: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.ext() == ext)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Gif => "image/gif",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Png => ImageFormat::Png,
            Format::Webp => ImageFormat::WebP,
            Format::Gif => ImageFormat::Gif,
        }
    }
}

/// Why an upload is refused, in words for the person uploading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("The file is empty.")]
    Empty,
    #[error("This file is {size_kb} KB; an image may be at most {max_kb} KB (MAX_IMAGE_BYTES).")]
    TooLarge { size_kb: usize, max_kb: usize },
    #[error("Only JPEG, PNG, WebP and GIF images can be uploaded.")]
    Unsupported,
    #[error("The image is {width}×{height} pixels; at most 40 megapixels and 16,384 pixels a side are accepted.")]
    TooManyPixels { width: u32, height: u32 },
    #[error("The image could not be read: the file is truncated or damaged.")]
    Damaged,
}

/// An accepted image: its bytes as uploaded, and its resized copies.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Hex SHA-256 of the bytes, 32 characters: its name.
    pub hash: String,
    pub format: Format,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
    /// (width, encoded bytes), narrowest first; none for GIFs (animation is kept).
    pub variants: Vec<(u32, Vec<u8>)>,
}

/// The name an image's bytes give it.
pub fn hash_of(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

/// Checks, decodes and resizes an upload. CPU-bound: run it on a blocking thread.
pub fn process(bytes: Vec<u8>, max_bytes: usize) -> Result<Upload, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    if bytes.len() > max_bytes {
        return Err(ImageError::TooLarge {
            size_kb: bytes.len().div_ceil(1024),
            max_kb: max_bytes / 1024,
        });
    }
    let format = match image::guess_format(&bytes) {
        Ok(ImageFormat::Jpeg) => Format::Jpeg,
        Ok(ImageFormat::Png) => Format::Png,
        Ok(ImageFormat::WebP) => Format::Webp,
        Ok(ImageFormat::Gif) => Format::Gif,
        _ => return Err(ImageError::Unsupported),
    };
    if !is_complete(format, &bytes) {
        return Err(ImageError::Damaged);
    }
    let reader = || ImageReader::with_format(Cursor::new(&bytes[..]), format.image_format());
    // From the header alone, before any pixel is allocated.
    let (width, height) = reader()
        .into_dimensions()
        .map_err(|_| ImageError::Damaged)?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS || width > MAX_SIDE || height > MAX_SIDE {
        return Err(ImageError::TooManyPixels { width, height });
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    // RGBA at 8 bits, with room for the decoder's own buffers.
    limits.max_alloc = Some(MAX_PIXELS * 4 * 2);
    let mut decoder = reader();
    decoder.limits(limits);
    let decoded = decoder.decode().map_err(|_| ImageError::Damaged)?;
    let mut variants = Vec::new();
    if format != Format::Gif {
        for w in VARIANT_WIDTHS.into_iter().filter(|w| *w < width) {
            let h = (u64::from(height) * u64::from(w) / u64::from(width)).max(1) as u32;
            let small = decoded.resize_exact(w, h, image::imageops::FilterType::Triangle);
            let mut out = Vec::new();
            match format {
                Format::Jpeg => small.to_rgb8().write_with_encoder(
                    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY),
                ),
                _ => small.write_to(&mut Cursor::new(&mut out), format.image_format()),
            }
            .map_err(|_| ImageError::Damaged)?;
            variants.push((w, out));
        }
    }
    Ok(Upload {
        hash: hash_of(&bytes),
        format,
        width,
        height,
        bytes,
        variants,
    })
}

/// Whether the file ends where its format says it does: some decoders fill a cut-off
/// image with grey instead of failing.
fn is_complete(format: Format, bytes: &[u8]) -> bool {
    match format {
        // The end-of-image marker, possibly followed by padding.
        Format::Jpeg => {
            let end = bytes.iter().rposition(|b| *b != 0).unwrap_or(0);
            end >= 1 && bytes[end - 1] == 0xFF && bytes[end] == 0xD9
        }
        // The trailer byte.
        Format::Gif => bytes.last() == Some(&0x3B),
        // The RIFF header's length covers the file.
        Format::Webp => {
            bytes.len() >= 12
                && u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize + 8
                    <= bytes.len()
        }
        // The decoder checks every chunk's CRC and the IEND chunk.
        Format::Png => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(format: ImageFormat, width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), format).unwrap();
        out
    }

    #[test]
    fn each_format_is_accepted_with_the_variants_narrower_than_it() {
        for (format, expected) in [
            (ImageFormat::Jpeg, Format::Jpeg),
            (ImageFormat::Png, Format::Png),
            (ImageFormat::WebP, Format::Webp),
            (ImageFormat::Gif, Format::Gif),
        ] {
            let up = process(encoded(format, 1000, 500), 1 << 20).unwrap();
            assert_eq!((up.format, up.width, up.height), (expected, 1000, 500));
            let widths: Vec<u32> = up.variants.iter().map(|(w, _)| *w).collect();
            match expected {
                Format::Gif => assert!(widths.is_empty()),
                _ => assert_eq!(widths, [480, 960]),
            }
            for (w, bytes) in &up.variants {
                let img = image::load_from_memory(bytes).unwrap();
                assert_eq!((img.width(), img.height()), (*w, w / 2));
            }
        }
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let png = encoded(ImageFormat::Png, 64, 64);
        let jpeg = encoded(ImageFormat::Jpeg, 64, 64);
        assert_eq!(process(Vec::new(), 100).unwrap_err(), ImageError::Empty);
        assert!(matches!(
            process(png.clone(), 100),
            Err(ImageError::TooLarge { .. })
        ));
        assert_eq!(
            process(b"<svg></svg>".to_vec(), 1 << 20).unwrap_err(),
            ImageError::Unsupported
        );
        for cut in [&png[..png.len() - 20], &jpeg[..jpeg.len() / 2]] {
            assert_eq!(
                process(cut.to_vec(), 1 << 20).unwrap_err(),
                ImageError::Damaged
            );
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_it_is_decoded() {
        // A valid 20000×20000 PNG header (400 megapixels) on a few bytes of data.
        let mut header = b"\x89PNG\r\n\x1a\n".to_vec();
        let ihdr: Vec<u8> = [
            &20_000u32.to_be_bytes()[..],
            &20_000u32.to_be_bytes(),
            &[8, 2, 0, 0, 0],
        ]
        .concat();
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut c = (data.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(data);
            let crc = crc32(&[kind, data].concat());
            c.extend_from_slice(&crc.to_be_bytes());
            c
        };
        header.extend(chunk(b"IHDR", &ihdr));
        header.extend(chunk(
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        ));
        header.extend(chunk(b"IEND", &[]));
        assert_eq!(
            process(header, 1 << 20).unwrap_err(),
            ImageError::TooManyPixels {
                width: 20_000,
                height: 20_000
            }
        );
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for byte in data {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
}
