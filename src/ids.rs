//! Opaque ids: what shoppers, agents and merchants see of a message, an alert or a cluster.
//!
//! Rows are numbered by the database across all stores, so a plain row number would tell any
//! client how busy the whole platform is (and how busy it was between two of its messages). On
//! the wire each number is instead one AES-128 block: a byte for the kind of id, seven zero
//! bytes and the number, encrypted under the deployment's id key, in URL-safe base64 (22
//! characters). Without the key the ids are unordered and say nothing; with it, decoding also
//! checks the kind and the zero bytes, so an alert's id is not taken for a message's, and a made
//! up id is refused (it decodes by chance once in 2⁶⁴ tries). The lookups behind them are still
//! scoped to the caller's store.
//!
//! The key is kept in the database (`settings`), made at its first opening, so that every node
//! sharing it, and every restart, agrees on the ids. [`install`] sets it for the process.

use std::sync::OnceLock;

use aes::Aes128;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The kinds of id, each decoded only as itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A stored message.
    Message = 1,
    /// A spike alert.
    Alert = 2,
    /// A cluster of unanswered questions (numbered by its first question).
    Cluster = 3,
}

struct Codec {
    cipher: Aes128,
    key: [u8; 16],
}

static CODEC: OnceLock<Codec> = OnceLock::new();

/// The key ids are encoded under when none was installed: only unit tests of wire frames run
/// without a database.
const UNINSTALLED: [u8; 16] = [0; 16];

/// The database's id key differs from the one this process already uses.
#[derive(Debug, thiserror::Error)]
#[error(
    "this database's id key is not the one this process already serves ids under; open one database per process"
)]
pub struct KeyConflict;

/// A new random key, as the hex text the database keeps: from two random UUIDs' 244 random
/// bits.
pub fn new_key() -> String {
    use sha2::Digest;
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let digest = sha2::Sha256::new().chain_update(a.as_bytes()).chain_update(b.as_bytes()).finalize();
    hex(&digest[..16])
}

/// The key a database this process opens is given when it has none yet: the one installed, or
/// else one new key for the whole process, so that databases opened at once (a test binary's)
/// are all given the same.
pub fn proposed_key() -> String {
    static PROPOSED: OnceLock<String> = OnceLock::new();
    CODEC.get().map_or_else(|| PROPOSED.get_or_init(new_key).clone(), |c| hex(&c.key))
}

/// Sets the process's id key (hex, from the database). Installing the same key again is fine.
pub fn install(key_hex: &str) -> Result<(), KeyConflict> {
    let key = parse_key(key_hex).ok_or(KeyConflict)?;
    let codec = CODEC.get_or_init(|| Codec::new(key));
    if codec.key == key { Ok(()) } else { Err(KeyConflict) }
}

fn codec() -> &'static Codec {
    static FALLBACK: OnceLock<Codec> = OnceLock::new();
    CODEC.get().unwrap_or_else(|| FALLBACK.get_or_init(|| Codec::new(UNINSTALLED)))
}

/// The opaque id of row `n` of `kind`.
pub fn encode(kind: Kind, n: i64) -> String {
    codec().encode(kind, n)
}

/// The row number behind an opaque id of `kind`, or `None` when `text` is not one.
pub fn decode(kind: Kind, text: &str) -> Option<i64> {
    codec().decode(kind, text)
}

impl Codec {
    fn new(key: [u8; 16]) -> Self {
        Self { cipher: Aes128::new(&key.into()), key }
    }

    fn encode(&self, kind: Kind, n: i64) -> String {
        let mut block = [0u8; 16];
        block[0] = kind as u8;
        block[8..].copy_from_slice(&n.to_be_bytes());
        let mut block = block.into();
        self.cipher.encrypt_block(&mut block);
        URL_SAFE_NO_PAD.encode(block)
    }

    fn decode(&self, kind: Kind, text: &str) -> Option<i64> {
        if text.len() != 22 {
            return None;
        }
        let bytes: [u8; 16] = URL_SAFE_NO_PAD.decode(text).ok()?.try_into().ok()?;
        let mut block = bytes.into();
        self.cipher.decrypt_block(&mut block);
        let block: [u8; 16] = block.into();
        if block[0] != kind as u8 || block[1..8].iter().any(|&b| b != 0) {
            return None;
        }
        Some(i64::from_be_bytes(block[8..].try_into().ok()?))
    }
}

fn parse_key(key_hex: &str) -> Option<[u8; 16]> {
    if key_hex.len() != 32 || !key_hex.is_ascii() {
        return None;
    }
    let mut key = [0u8; 16];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&key_hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> Codec {
        Codec::new(parse_key(&new_key()).unwrap())
    }

    #[test]
    fn ids_round_trip_only_as_their_own_kind_and_key() {
        let (codec, other) = (codec(), codec());
        for n in [0, 1, 2, 41, 1 << 40, i64::MAX] {
            let id = codec.encode(Kind::Message, n);
            assert_eq!(id.len(), 22, "{id}");
            assert_eq!(codec.decode(Kind::Message, &id), Some(n));
            assert_eq!(codec.decode(Kind::Alert, &id), None, "a message id is not an alert's");
            assert_eq!(other.decode(Kind::Message, &id), None, "nor another deployment's");
        }
    }

    #[test]
    fn neighbouring_rows_share_nothing_visible_and_made_up_ids_are_refused() {
        let codec = codec();
        let (a, b) = (codec.encode(Kind::Message, 1000), codec.encode(Kind::Message, 1001));
        let same = a.bytes().zip(b.bytes()).filter(|(x, y)| x == y).count();
        assert!(same < 6, "{a} and {b} share {same} characters");
        for made_up in ["", "1000", "AAAAAAAAAAAAAAAAAAAAAA", "!!!!!!!!!!!!!!!!!!!!!!", "ünïcödé"] {
            assert_eq!(codec.decode(Kind::Message, made_up), None, "{made_up:?}");
        }
        let mut flipped = a.clone().into_bytes();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        assert_eq!(codec.decode(Kind::Message, std::str::from_utf8(&flipped).unwrap()), None);
    }

    #[test]
    fn keys_are_hex_of_sixteen_random_bytes() {
        let (a, b) = (new_key(), new_key());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(parse_key(&a).is_some());
        assert!(parse_key("zz").is_none());
    }
}
