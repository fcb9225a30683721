//! mibot's model file: the encoder's weights and vocabulary in one file, written once by
//! [`install`](super::install) and read at start-up.
//!
//! Layout: the magic `MIBOTENC`, a little-endian `u32` format version, a `u32` header length,
//! the header as JSON ([`Header`]: the architecture and where each tensor lies), then the tensors'
//! bytes, little-endian, each starting at a multiple of 64. Tensors:
//! - `tokenizer.pieces` (UTF-8 bytes), `tokenizer.offsets` (u32, one more than pieces),
//!   `tokenizer.scores` (f32), `normalize.from` / `normalize.offsets` / `normalize.to` (u32
//!   code points): the vocabulary and its normalisation table;
//! - `embed.word`: the token embeddings in 4-bit blocks of 32 (an f16 scale, then 16 bytes whose
//!   low nibbles are weights 0–15 and high nibbles 16–31, each `(q − 8) · scale`), one row per
//!   token; `embed.position` (f32 `[positions, hidden]`), `embed.type`, `embed.norm.weight|bias`;
//! - per layer `l{n}.`: `qkv`, `out`, `up`, `down` as int8 `[in, out]` with an f32 scale per
//!   output column (`.weight`, `.scale`) and an f32 `.bias`; `attn_norm.*` and `ffn_norm.*`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::tokenizer::{Specials, Tokenizer};

const MAGIC: &[u8; 8] = b"MIBOTENC";
const FORMAT: u32 = 1;
const ALIGN: usize = 64;
/// Bytes of one 4-bit block of 32 weights: an f16 scale and 16 bytes of nibbles.
pub(crate) const Q4_BLOCK_BYTES: usize = 18;

/// The architecture, as the header records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// The model's name, e.g. `multilingual-e5-small`.
    pub name: String,
    /// Width of the hidden states and of the embedding.
    pub hidden: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate: usize,
    /// Most tokens one input can have, `<s>` and `</s>` included.
    pub max_positions: usize,
    /// Layer normalisation's epsilon.
    pub eps: f32,
    /// Rows of the token embedding table.
    pub vocab_rows: usize,
    /// The special tokens.
    pub specials: Specials,
}

/// Where one tensor lies in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    offset: usize,
    bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DType {
    F32,
    I8,
    U8,
    U32,
}

impl DType {
    fn size(self) -> usize {
        match self {
            Self::F32 | Self::U32 => 4,
            Self::I8 | Self::U8 => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    architecture: Architecture,
    tensors: BTreeMap<String, Entry>,
}

/// A tensor's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// Signed bytes.
    I8(Vec<i8>),
    /// Bytes.
    U8(Vec<u8>),
    /// 32-bit unsigned integers.
    U32(Vec<u32>),
}

/// A tensor: its shape and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The shape; the product is the number of values.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: Data,
}

/// The model file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file is not a model file of this version, or is damaged.
    #[error("not a usable model file: {0}")]
    Format(String),
}

fn bad(what: impl Into<String>) -> ModelError {
    ModelError::Format(what.into())
}

/// Every tensor of a model, by name, with its architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// The architecture.
    pub architecture: Architecture,
    tensors: BTreeMap<String, Tensor>,
}

impl Weights {
    /// Weights of `architecture`, with no tensors yet.
    pub fn new(architecture: Architecture) -> Self {
        Self { architecture, tensors: BTreeMap::new() }
    }

    /// Adds (or replaces) a tensor.
    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Data) {
        self.tensors.insert(name.into(), Tensor { shape, data });
    }

    /// The tensor called `name`, which must hold f32 values.
    pub fn f32(&self, name: &str) -> Result<&[f32], ModelError> {
        match self.tensors.get(name).map(|t| &t.data) {
            Some(Data::F32(v)) => Ok(v),
            _ => Err(bad(format!("no f32 tensor {name}"))),
        }
    }

    /// The tensor called `name`, which must hold i8 values.
    pub fn i8(&self, name: &str) -> Result<&[i8], ModelError> {
        match self.tensors.get(name).map(|t| &t.data) {
            Some(Data::I8(v)) => Ok(v),
            _ => Err(bad(format!("no i8 tensor {name}"))),
        }
    }

    /// The tensor called `name`, which must hold bytes.
    pub fn u8(&self, name: &str) -> Result<&[u8], ModelError> {
        match self.tensors.get(name).map(|t| &t.data) {
            Some(Data::U8(v)) => Ok(v),
            _ => Err(bad(format!("no byte tensor {name}"))),
        }
    }

    /// The tensor called `name`, which must hold u32 values.
    pub fn u32(&self, name: &str) -> Result<&[u32], ModelError> {
        match self.tensors.get(name).map(|t| &t.data) {
            Some(Data::U32(v)) => Ok(v),
            _ => Err(bad(format!("no u32 tensor {name}"))),
        }
    }

    /// Takes the tensor called `name` out, which must hold bytes.
    pub fn take_u8(&mut self, name: &str) -> Result<Vec<u8>, ModelError> {
        match self.tensors.remove(name).map(|t| t.data) {
            Some(Data::U8(v)) => Ok(v),
            _ => Err(bad(format!("no byte tensor {name}"))),
        }
    }

    /// The shape of the tensor called `name`.
    pub fn shape(&self, name: &str) -> Result<&[usize], ModelError> {
        self.tensors.get(name).map(|t| t.shape.as_slice()).ok_or_else(|| bad(format!("no tensor {name}")))
    }

    /// Writes the file; it appears under `path` only once complete.
    pub fn write(&self, path: &Path) -> Result<(), ModelError> {
        let mut entries = BTreeMap::new();
        let mut offset = 0usize;
        for (name, tensor) in &self.tensors {
            let (dtype, len) = match &tensor.data {
                Data::F32(v) => (DType::F32, v.len()),
                Data::I8(v) => (DType::I8, v.len()),
                Data::U8(v) => (DType::U8, v.len()),
                Data::U32(v) => (DType::U32, v.len()),
            };
            if tensor.shape.iter().product::<usize>() != len {
                return Err(bad(format!(
                    "tensor {name}: shape {:?} does not hold {len} values",
                    tensor.shape
                )));
            }
            offset = offset.next_multiple_of(ALIGN);
            let bytes = len * dtype.size();
            entries.insert(name.clone(), Entry { dtype, shape: tensor.shape.clone(), offset, bytes });
            offset += bytes;
        }
        let header =
            serde_json::to_vec(&Header { architecture: self.architecture.clone(), tensors: entries })
                .map_err(|e| bad(e.to_string()))?;
        let start = (MAGIC.len() + 8 + header.len()).next_multiple_of(ALIGN);
        let partial = path.with_extension("partial");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&partial)?);
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT.to_le_bytes())?;
        out.write_all(&u32::try_from(header.len()).map_err(|_| bad("header too large"))?.to_le_bytes())?;
        out.write_all(&header)?;
        let mut written = MAGIC.len() + 8 + header.len();
        for tensor in self.tensors.values() {
            let pad = written.next_multiple_of(ALIGN).max(start) - written;
            out.write_all(&vec![0u8; pad])?;
            written += pad;
            written += match &tensor.data {
                Data::F32(v) => write_all(&mut out, v.iter().map(|x| x.to_le_bytes()))?,
                Data::I8(v) => write_all(&mut out, v.iter().map(|x| x.to_le_bytes()))?,
                Data::U8(v) => {
                    out.write_all(v)?;
                    v.len()
                }
                Data::U32(v) => write_all(&mut out, v.iter().map(|x| x.to_le_bytes()))?,
            };
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&partial, path)?;
        Ok(())
    }

    /// Reads a model file.
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let bytes = std::fs::read(path)?;
        Self::parse(&bytes)
    }

    fn parse(bytes: &[u8]) -> Result<Self, ModelError> {
        let word = |at: usize| -> Result<u32, ModelError> {
            let slice = bytes.get(at..at + 4).ok_or_else(|| bad("truncated header"))?;
            Ok(u32::from_le_bytes([slice[0], slice[1], slice[2], slice[3]]))
        };
        if bytes.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
            return Err(bad("it does not start with MIBOTENC"));
        }
        let version = word(8)?;
        if version != FORMAT {
            return Err(bad(format!("format version {version}; this mibot reads version {FORMAT}")));
        }
        let len = word(12)? as usize;
        let header: Header =
            serde_json::from_slice(bytes.get(16..16 + len).ok_or_else(|| bad("truncated header"))?)
                .map_err(|e| bad(format!("header: {e}")))?;
        let start = (16 + len).next_multiple_of(ALIGN);
        let mut tensors = BTreeMap::new();
        for (name, entry) in header.tensors {
            let at = start + entry.offset;
            let raw =
                bytes.get(at..at + entry.bytes).ok_or_else(|| bad(format!("tensor {name} is truncated")))?;
            let values = entry.bytes / entry.dtype.size();
            if entry.shape.iter().product::<usize>() != values {
                return Err(bad(format!("tensor {name}: shape {:?} does not fit its bytes", entry.shape)));
            }
            let four = || raw.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]);
            let data = match entry.dtype {
                DType::F32 => Data::F32(four().map(f32::from_le_bytes).collect()),
                DType::U32 => Data::U32(four().map(u32::from_le_bytes).collect()),
                DType::I8 => Data::I8(raw.iter().map(|&b| b as i8).collect()),
                DType::U8 => Data::U8(raw.to_vec()),
            };
            tensors.insert(name, Tensor { shape: entry.shape, data });
        }
        Ok(Self { architecture: header.architecture, tensors })
    }

    /// The tokenizer stored with the weights.
    pub fn tokenizer(&self) -> Result<Tokenizer, ModelError> {
        let blob = self.u8("tokenizer.pieces")?;
        let offsets = self.u32("tokenizer.offsets")?;
        let scores = self.f32("tokenizer.scores")?;
        if offsets.len() != scores.len() + 1 {
            return Err(bad("tokenizer: offsets and scores disagree"));
        }
        let mut pieces = Vec::with_capacity(scores.len());
        for (i, &score) in scores.iter().enumerate() {
            let span = blob
                .get(offsets[i] as usize..offsets[i + 1] as usize)
                .ok_or_else(|| bad("tokenizer: bad offset"))?;
            pieces.push((String::from_utf8_lossy(span).into_owned(), score));
        }
        let from = self.u32("normalize.from")?;
        let offsets = self.u32("normalize.offsets")?;
        let to = self.u32("normalize.to")?;
        if offsets.len() != from.len() + 1 {
            return Err(bad("normalisation table: offsets and entries disagree"));
        }
        let mut table = Vec::with_capacity(from.len());
        for (i, &c) in from.iter().enumerate() {
            let outs = to
                .get(offsets[i] as usize..offsets[i + 1] as usize)
                .ok_or_else(|| bad("normalisation: bad offset"))?;
            if let Some(c) = char::from_u32(c) {
                table.push((c, outs.iter().filter_map(|&o| char::from_u32(o)).collect()));
            }
        }
        Ok(Tokenizer::new(pieces, table, self.architecture.specials))
    }
}

fn write_all<const N: usize>(
    out: &mut impl Write,
    values: impl Iterator<Item = [u8; N]>,
) -> std::io::Result<usize> {
    let mut n = 0;
    for v in values {
        out.write_all(&v)?;
        n += N;
    }
    Ok(n)
}

/// The token embeddings, kept in their 4-bit blocks: rows are expanded only when looked up.
#[derive(Debug)]
pub struct WordTable {
    blocks: Vec<u8>,
    hidden: usize,
    rows: usize,
}

impl WordTable {
    /// Takes `embed.word` out of `weights`.
    pub fn take(weights: &mut Weights) -> Result<Self, ModelError> {
        let hidden = weights.architecture.hidden;
        let rows = weights.architecture.vocab_rows;
        let blocks = weights.take_u8("embed.word")?;
        if !hidden.is_multiple_of(32) || blocks.len() != rows * hidden / 32 * Q4_BLOCK_BYTES {
            return Err(bad("embed.word does not hold one 4-bit row per token"));
        }
        Ok(Self { blocks, hidden, rows })
    }

    /// Adds row `id` to `out` (of `hidden` values). An id past the table adds nothing.
    pub fn add_row(&self, id: u32, out: &mut [f32]) {
        let id = id as usize;
        if id >= self.rows {
            return;
        }
        let per_row = self.hidden / 32 * Q4_BLOCK_BYTES;
        let row = &self.blocks[id * per_row..(id + 1) * per_row];
        for (block, out) in row.chunks_exact(Q4_BLOCK_BYTES).zip(out.chunks_exact_mut(32)) {
            let scale = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            for (j, &q) in block[2..].iter().enumerate() {
                out[j] += (f32::from(q & 0x0f) - 8.0) * scale;
                out[j + 16] += (f32::from(q >> 4) - 8.0) * scale;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn architecture() -> Architecture {
        Architecture {
            name: "test".into(),
            hidden: 32,
            layers: 0,
            heads: 1,
            intermediate: 32,
            max_positions: 4,
            eps: 1e-12,
            vocab_rows: 2,
            specials: Specials { bos: 0, eos: 2, pad: 1, unk: 3 },
        }
    }

    #[test]
    fn a_written_file_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Weights::new(architecture());
        w.insert("a", vec![2, 3], Data::F32(vec![1.0, -2.5, 3.0, 0.0, f32::MIN_POSITIVE, 7.0]));
        w.insert("b", vec![3], Data::I8(vec![-128, 0, 127]));
        w.insert("c", vec![1], Data::U32(vec![u32::MAX]));
        w.insert("d", vec![5], Data::U8(b"hello".to_vec()));
        let path = dir.path().join("model.bin");
        w.write(&path).unwrap();
        assert_eq!(Weights::read(&path).unwrap(), w);
        assert!(!path.with_extension("partial").exists());
    }

    #[test]
    fn damaged_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        let mut w = Weights::new(architecture());
        w.insert("a", vec![4], Data::F32(vec![1.0; 4]));
        w.write(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(matches!(Weights::read(&path), Err(ModelError::Format(m)) if m.contains("truncated")));
        std::fs::write(&path, b"not a model").unwrap();
        assert!(matches!(Weights::read(&path), Err(ModelError::Format(m)) if m.contains("MIBOTENC")));
    }

    #[test]
    fn word_rows_expand_their_nibbles() {
        let mut w = Weights::new(architecture());
        // Row 0: scale 1.0, nibble pairs (low, high) = (9, 7) → weights 1 and −1. Row 1: scale 0.5.
        let mut blocks = Vec::new();
        for scale in [1.0f32, 0.5] {
            blocks.extend(half::f16::from_f32(scale).to_le_bytes());
            blocks.extend([0x79u8; 16]);
        }
        w.insert("embed.word", vec![blocks.len()], Data::U8(blocks));
        let table = WordTable::take(&mut w).unwrap();
        let mut out = vec![0.0; 32];
        table.add_row(1, &mut out);
        assert_eq!(out[0], 0.5);
        assert_eq!(out[16], -0.5);
        table.add_row(7, &mut out);
        assert_eq!(out[0], 0.5, "an id past the table adds nothing");
    }
}
