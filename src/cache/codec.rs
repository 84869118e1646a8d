//! Values on the wire: MessagePack (serde, compact, self-describing so `flatten` and
//! added fields survive) behind a one-byte header; bodies over the threshold are LZ4
//! compressed.

use serde::de::DeserializeOwned;
use serde::Serialize;

const RAW: u8 = 0;
const LZ4: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("decode: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("decompress: {0}")]
    Decompress(#[from] lz4_flex::block::DecompressError),
    #[error("unknown value header {0}")]
    Header(u8),
    #[error("empty value")]
    Empty,
}

#[derive(Debug, Clone, Copy)]
pub struct Codec {
    pub compress_over: usize,
}

impl Codec {
    pub fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        let body = rmp_serde::to_vec_named(value)?;
        if body.len() > self.compress_over {
            let mut out = vec![LZ4];
            out.extend_from_slice(&lz4_flex::compress_prepend_size(&body));
            return Ok(out);
        }
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(RAW);
        out.extend_from_slice(&body);
        Ok(out)
    }

    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        match bytes.split_first() {
            Some((&RAW, body)) => Ok(rmp_serde::from_slice(body)?),
            Some((&LZ4, body)) => Ok(rmp_serde::from_slice(
                &lz4_flex::decompress_size_prepended(body)?,
            )?),
            Some((&other, _)) => Err(CodecError::Header(other)),
            None => Err(CodecError::Empty),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_small_and_compressed_values() {
        let codec = Codec { compress_over: 64 };
        let small = vec![1u32, 2, 3];
        let encoded = codec.encode(&small).unwrap();
        assert_eq!(encoded[0], RAW);
        assert_eq!(codec.decode::<Vec<u32>>(&encoded).unwrap(), small);
        let big = "cache ".repeat(1000);
        let encoded = codec.encode(&big).unwrap();
        assert_eq!(encoded[0], LZ4);
        assert!(encoded.len() < big.len() / 4, "repetitive text compresses");
        assert_eq!(codec.decode::<String>(&encoded).unwrap(), big);
        assert!(codec.decode::<String>(&[9, 1, 2]).is_err());
    }
}
