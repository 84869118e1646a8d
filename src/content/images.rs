//! Uploaded images: refused before decoding when the bytes are not JPEG, PNG, WebP or
//! GIF, too large, or declare too many pixels (a decompression bomb is a few KB that
//! declares gigapixels); decoded whole within memory limits (a truncated or damaged
//! file is an error, not a grey half-picture: JPEGs are decoded strictly); then stored
//! without what the camera or editor wrote besides the picture — EXIF (the GPS position
//! among it), XMP, IPTC, comments, trailing data — and with the EXIF orientation
//! applied to the pixels, so the original and its resized copies stand the same way.
//! JPEG and PNG are re-encoded (JPEG at quality 90, keeping the colour profile), WebP
//! has its metadata chunks removed (re-encoded only when it must be rotated), GIF is
//! re-encoded frame by frame within a budget of frames and pixels. Resized once into
//! the widths a page's `srcset` offers. Named by the hash of the stored bytes, so a URL
//! never shows another image and browsers and edges may keep it forever.

use std::io::Cursor;

use image::metadata::Orientation;
use image::{
    AnimationDecoder, DynamicImage, ImageDecoder, ImageEncoder, ImageFormat, ImageReader, Limits,
};
use sha2::{Digest, Sha256};

/// Widths of the resized copies, for `srcset` (those narrower than the image).
pub const VARIANT_WIDTHS: [u32; 3] = [480, 960, 1600];
/// At most this many pixels (a 40-megapixel photo), and this many a side.
pub const MAX_PIXELS: u64 = 40_000_000;
pub const MAX_SIDE: u32 = 16_384;
/// An animation (GIF, WebP): at most this many frames, and this many pixels over all of
/// them (what decoding and re-encoding it costs).
pub const MAX_FRAMES: usize = 500;
pub const MAX_ANIMATION_PIXELS: u64 = 50_000_000;
/// JPEG quality of resized copies, and of the stored original.
const JPEG_QUALITY: u8 = 82;
const ORIGINAL_JPEG_QUALITY: u8 = 90;

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
    #[error("The animation is too long: at most 500 frames and 50 megapixels over all frames are accepted.")]
    TooManyFrames,
    #[error("The image could not be read: the file is truncated or damaged.")]
    Damaged,
}

/// An accepted image: its bytes as stored (no metadata, upright), and its resized copies.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Hex SHA-256 of the stored bytes, 32 characters: its name.
    pub hash: String,
    pub format: Format,
    /// As shown (after the orientation is applied).
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

/// Decoding limits: the pixels accepted, RGBA at 8 bits, with room for the decoder's
/// own buffers.
fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_PIXELS * 4 * 2);
    limits
}

/// Checks, decodes, cleans and resizes an upload. CPU-bound: run it on a blocking
/// thread, one at a time (`web::limits`): a 40-megapixel image takes a few hundred MB
/// while it is decoded.
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
    let reader = || {
        let mut reader = ImageReader::with_format(Cursor::new(&bytes[..]), format.image_format());
        reader.limits(limits());
        reader
    };
    // From the header alone, before any pixel is allocated.
    let (width, height) = ImageReader::with_format(Cursor::new(&bytes[..]), format.image_format())
        .into_dimensions()
        .map_err(|_| ImageError::Damaged)?;
    if u64::from(width) * u64::from(height) > MAX_PIXELS || width > MAX_SIDE || height > MAX_SIDE {
        return Err(ImageError::TooManyPixels { width, height });
    }
    if format == Format::Jpeg {
        decodes_strictly(&bytes)?;
    }
    if format == Format::Gif {
        let stored = reencode_gif(&bytes)?;
        return Ok(Upload {
            hash: hash_of(&stored),
            format,
            width,
            height,
            bytes: stored,
            variants: Vec::new(),
        });
    }
    let mut decoder = reader().into_decoder().map_err(|_| ImageError::Damaged)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let icc = decoder.icc_profile().ok().flatten();
    let mut decoded = DynamicImage::from_decoder(decoder).map_err(|_| ImageError::Damaged)?;
    decoded.apply_orientation(orientation);
    let (width, height) = (decoded.width(), decoded.height());
    let stored = match format {
        Format::Jpeg => encode_jpeg(&decoded, ORIGINAL_JPEG_QUALITY, icc)?,
        Format::Png => {
            let mut out = Vec::new();
            let encoder = image::codecs::png::PngEncoder::new_with_quality(
                &mut out,
                image::codecs::png::CompressionType::Default,
                image::codecs::png::FilterType::Adaptive,
            );
            write(&decoded, encoder, icc)?;
            out
        }
        Format::Webp if orientation == Orientation::NoTransforms => strip_webp(&bytes)?,
        // Rotated: the only encoder at hand is lossless (larger, but upright and clean).
        Format::Webp => {
            let mut out = Vec::new();
            let encoder = image::codecs::webp::WebPEncoder::new_lossless(&mut out);
            write(&decoded, encoder, icc)?;
            out
        }
        Format::Gif => unreachable!("handled above"),
    };
    // Widest first, each from the one before: a third of the work of three resizes of
    // the original.
    let mut variants = Vec::new();
    let mut source = decoded;
    for w in VARIANT_WIDTHS.into_iter().rev().filter(|w| *w < width) {
        let h = (u64::from(height) * u64::from(w) / u64::from(width)).max(1) as u32;
        let small = source.resize_exact(w, h, image::imageops::FilterType::Triangle);
        let out = match format {
            Format::Jpeg => encode_jpeg(&small, JPEG_QUALITY, None)?,
            _ => {
                let mut out = Vec::new();
                small
                    .write_to(&mut Cursor::new(&mut out), format.image_format())
                    .map_err(|_| ImageError::Damaged)?;
                out
            }
        };
        variants.push((w, out));
        source = small;
    }
    variants.reverse();
    Ok(Upload {
        hash: hash_of(&stored),
        format,
        width,
        height,
        bytes: stored,
        variants,
    })
}

/// Encodes `img` with `encoder`, carrying the colour profile (nothing else of the
/// original's metadata).
fn write(
    img: &DynamicImage,
    mut encoder: impl ImageEncoder,
    icc: Option<Vec<u8>>,
) -> Result<(), ImageError> {
    if let Some(icc) = icc {
        // An encoder that cannot carry a profile only shows the colours a little off.
        let _ = encoder.set_icc_profile(icc);
    }
    img.write_with_encoder(encoder)
        .map_err(|_| ImageError::Damaged)
}

fn encode_jpeg(
    img: &DynamicImage,
    quality: u8,
    icc: Option<Vec<u8>>,
) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    write(&DynamicImage::ImageRgb8(img.to_rgb8()), encoder, icc)?;
    Ok(out)
}

/// A JPEG whose entropy-coded data ends early is filled with grey by every decoder
/// (libjpeg only warns), even strictly, when an end marker follows the cut: so the
/// picture must not depend on what lies between its data and its end marker. Decoded
/// as sent and with filler inserted before the last end marker: a complete image
/// ignores the filler, a cut one decodes the filler as its missing rows.
fn decodes_strictly(bytes: &[u8]) -> Result<(), ImageError> {
    let decode = |bytes: &[u8]| {
        let options = zune_core::options::DecoderOptions::new_safe()
            .set_strict_mode(true)
            .set_max_width(MAX_SIDE as usize)
            .set_max_height(MAX_SIDE as usize);
        zune_jpeg::JpegDecoder::new_with_options(Cursor::new(bytes), options)
            .decode()
            .map_err(|_| ImageError::Damaged)
    };
    let pixels = decode(bytes)?;
    let end = bytes
        .windows(2)
        .rposition(|w| w == [0xFF, 0xD9])
        .ok_or(ImageError::Damaged)?;
    let probe = [&bytes[..end], &[0x5A; 64][..], &bytes[end..]].concat();
    match decode(&probe) {
        Ok(probed) if probed == pixels => Ok(()),
        _ => Err(ImageError::Damaged),
    }
}

/// The GIF re-encoded frame by frame (no comment or application extension survives),
/// one frame in memory at a time. Counted first, without encoding (which costs far more
/// than decoding): a frame bomb is refused for the price of reading it.
fn reencode_gif(bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    let frames = || -> Result<_, ImageError> {
        let mut decoder = image::codecs::gif::GifDecoder::new(Cursor::new(bytes))
            .map_err(|_| ImageError::Damaged)?;
        decoder
            .set_limits(limits())
            .map_err(|_| ImageError::Damaged)?;
        Ok(decoder.into_frames())
    };
    let (mut count, mut pixels) = (0usize, 0u64);
    for frame in frames()? {
        let buffer = frame.map_err(|_| ImageError::Damaged)?.into_buffer();
        count += 1;
        pixels += u64::from(buffer.width()) * u64::from(buffer.height());
        if count > MAX_FRAMES || pixels > MAX_ANIMATION_PIXELS {
            return Err(ImageError::TooManyFrames);
        }
    }
    if count == 0 {
        return Err(ImageError::Damaged);
    }
    let mut out = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new_with_speed(&mut out, 30);
        encoder
            .set_repeat(image::codecs::gif::Repeat::Infinite)
            .map_err(|_| ImageError::Damaged)?;
        for frame in frames()? {
            let frame = frame.map_err(|_| ImageError::Damaged)?;
            encoder
                .encode_frame(frame)
                .map_err(|_| ImageError::Damaged)?;
        }
    }
    Ok(out)
}

/// A WebP without its `EXIF` and `XMP ` chunks (and their flags in `VP8X`), its
/// animation within `MAX_FRAMES` and `MAX_ANIMATION_PIXELS`; the picture's own chunks
/// are kept byte for byte.
fn strip_webp(bytes: &[u8]) -> Result<Vec<u8>, ImageError> {
    let mut out = bytes[..12].to_vec();
    let (mut at, mut frames, mut pixels) = (12usize, 0usize, 0u64);
    while at + 8 <= bytes.len() {
        let kind = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let end = at + 8 + size + (size & 1);
        let chunk = bytes
            .get(at..end.min(bytes.len()))
            .ok_or(ImageError::Damaged)?;
        if at + 8 + size > bytes.len() {
            return Err(ImageError::Damaged);
        }
        match kind {
            b"EXIF" | b"XMP " => {}
            b"VP8X" if size >= 10 => {
                let mut chunk = chunk.to_vec();
                chunk[8] &= !(0x08 | 0x04);
                out.extend_from_slice(&chunk);
            }
            b"ANMF" if size >= 16 => {
                let d = &chunk[8..];
                let side =
                    |i: usize| u64::from(u32::from_le_bytes([d[i], d[i + 1], d[i + 2], 0]) + 1);
                frames += 1;
                pixels += side(6) * side(9);
                if frames > MAX_FRAMES || pixels > MAX_ANIMATION_PIXELS {
                    return Err(ImageError::TooManyFrames);
                }
                out.extend_from_slice(chunk);
            }
            _ => out.extend_from_slice(chunk),
        }
        at = end;
    }
    let riff = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&riff.to_le_bytes());
    Ok(out)
}

/// Whether the file ends where its format says it does: some decoders fill a cut-off
/// image with grey instead of failing (JPEGs are also decoded strictly, see
/// `decodes_strictly`).
fn is_complete(format: Format, bytes: &[u8]) -> bool {
    match format {
        // Decoded strictly instead: a marker at the end proves nothing, and a phone's
        // motion photo carries a video after it (dropped when the file is re-encoded).
        Format::Jpeg => true,
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

    /// A WebP in the extended format carrying EXIF and XMP chunks: stored without them,
    /// the picture's chunk byte for byte.
    #[test]
    fn a_webp_loses_its_metadata_chunks_and_keeps_its_picture() {
        let simple = encoded(ImageFormat::WebP, 300, 200);
        let picture = &simple[12..];
        let chunk = |kind: &[u8], data: &[u8]| {
            let mut c = kind.to_vec();
            c.extend((data.len() as u32).to_le_bytes());
            c.extend_from_slice(data);
            if data.len() % 2 == 1 {
                c.push(0);
            }
            c
        };
        let mut vp8x = vec![0x08 | 0x04, 0, 0, 0];
        vp8x.extend(&299u32.to_le_bytes()[..3]);
        vp8x.extend(&199u32.to_le_bytes()[..3]);
        let body = [
            b"WEBP".to_vec(),
            chunk(b"VP8X", &vp8x),
            picture.to_vec(),
            chunk(b"EXIF", b"II*\0GPS 38.7223 N"),
            chunk(b"XMP ", b"<x:xmpmeta>GPS 38.7223 N</x:xmpmeta>"),
        ]
        .concat();
        let file = [
            b"RIFF".to_vec(),
            (body.len() as u32).to_le_bytes().to_vec(),
            body,
        ]
        .concat();
        let up = process(file, 1 << 20).unwrap();
        let has = |needle: &[u8]| up.bytes.windows(needle.len()).any(|w| w == needle);
        assert!(!has(b"GPS") && !has(b"EXIF") && !has(b"XMP "));
        assert!(has(picture), "the picture's own chunk is kept");
        assert_eq!(
            up.bytes[20] & (0x08 | 0x04),
            0,
            "no metadata flag left in VP8X"
        );
        let decoded = image::load_from_memory(&up.bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (300, 200));
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
