//! ed25519 keys in Nix's `<name>:<base64>` text form (§7.4).
//!
//! * secret key: 64 bytes, libsodium's layout: the 32-byte seed, then the 32-byte
//!   public key;
//! * public key: the 32 bytes of the public point.
//!
//! The text is split at the first `:`; the name must not be empty (and so cannot contain
//! `:`). The key material is decoded with 2.8's lenient base64 reader, so the trailing
//! newline some key files carry is accepted, as by Nix.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::{base64, Error, Result};

/// Which kind of key an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Secret,
    Public,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Secret => "secret",
            KeyKind::Public => "public",
        })
    }
}

/// Split `<name>:<material>` and decode the material, checking name and size.
fn parse_key_text(kind: KeyKind, text: &str, expected: usize) -> Result<(String, Vec<u8>)> {
    let (name, material) = text
        .split_once(':')
        .ok_or(Error::KeyMissingColon { kind })?;
    if name.is_empty() {
        return Err(Error::KeyEmptyName { kind });
    }
    let name = name.to_string();
    if material.is_empty() {
        return Err(Error::KeyEmpty { kind, name });
    }
    let bytes = match base64::decode_lenient(material) {
        Ok(bytes) => bytes,
        Err(ch) => return Err(Error::KeyBadBase64 { kind, name, ch }),
    };
    if bytes.len() != expected {
        return Err(Error::KeyWrongLength {
            kind,
            name,
            len: bytes.len(),
            expected,
        });
    }
    Ok((name, bytes))
}

fn check_name(kind: KeyKind, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::KeyEmptyName { kind });
    }
    if name.contains(':') {
        return Err(Error::KeyNameHasColon {
            kind,
            name: name.to_string(),
        });
    }
    Ok(())
}

/// A named ed25519 signing key, as written by `nix-store --generate-binary-cache-key`.
///
/// Its [`Debug`](fmt::Debug) output shows only the name; use
/// [`to_nix_string`](SecretKey::to_nix_string) to get the secret text.
#[derive(Clone)]
pub struct SecretKey {
    name: String,
    key: SigningKey,
}

impl SecretKey {
    /// Size of the decoded key material: seed followed by public key.
    pub const LEN: usize = 64;

    /// Parse `<name>:<base64 of seed || public key>`.
    pub fn parse(text: &str) -> Result<SecretKey> {
        let (name, bytes) = parse_key_text(KeyKind::Secret, text, Self::LEN)?;
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[..32]);
        let key = SigningKey::from_bytes(&seed);
        if key.verifying_key().as_bytes()[..] != bytes[32..] {
            return Err(Error::SecretKeyMismatch { name });
        }
        Ok(SecretKey { name, key })
    }

    /// A key with the given name from a 32-byte seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<SecretKey> {
        check_name(KeyKind::Secret, name)?;
        Ok(SecretKey {
            name: name.to_string(),
            key: SigningKey::from_bytes(seed),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The matching public key, under the same name.
    pub fn to_public_key(&self) -> PublicKey {
        PublicKey {
            name: self.name.clone(),
            bytes: self.key.verifying_key().to_bytes(),
        }
    }

    /// The text Nix stores in a secret-key file (no trailing newline).
    pub fn to_nix_string(&self) -> String {
        format!(
            "{}:{}",
            self.name,
            base64::encode(&self.key.to_keypair_bytes())
        )
    }

    /// Sign `data` (normally a [`fingerprint`](crate::fingerprint())), giving
    /// `<name>:<base64 of the 64-byte signature>`. Deterministic, as in Nix.
    pub fn sign(&self, data: &[u8]) -> String {
        let signature: Signature = self.key.sign(data);
        format!("{}:{}", self.name, base64::encode(&signature.to_bytes()))
    }
}

impl FromStr for SecretKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        SecretKey::parse(s)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}:<redacted>)", self.name)
    }
}

/// A named ed25519 public key (Nix's `trusted-public-keys` entries).
///
/// Any 32 bytes are accepted, as by Nix; bytes that are not a valid curve point simply
/// never verify anything.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    name: String,
    bytes: [u8; 32],
}

impl PublicKey {
    /// Size of the decoded key material.
    pub const LEN: usize = 32;

    /// Parse `<name>:<base64 of 32 bytes>`.
    pub fn parse(text: &str) -> Result<PublicKey> {
        let (name, bytes) = parse_key_text(KeyKind::Public, text, Self::LEN)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        Ok(PublicKey { name, bytes: key })
    }

    /// A key with the given name and raw bytes.
    pub fn from_bytes(name: &str, bytes: [u8; 32]) -> Result<PublicKey> {
        check_name(KeyKind::Public, name)?;
        Ok(PublicKey {
            name: name.to_string(),
            bytes,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Check a raw 64-byte signature over `data`. Uses strict verification (rejecting
    /// small-order points and non-canonical scalars), like libsodium.
    pub fn verify_raw(&self, data: &[u8], signature: &[u8; 64]) -> bool {
        match VerifyingKey::from_bytes(&self.bytes) {
            Ok(key) => key
                .verify_strict(data, &Signature::from_bytes(signature))
                .is_ok(),
            Err(_) => false,
        }
    }
}

impl FromStr for PublicKey {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        PublicKey::parse(s)
    }
}

impl fmt::Display for PublicKey {
    /// `<name>:<base64>`, the form Nix writes to a public-key file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, base64::encode(&self.bytes))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A set of trusted public keys, looked up by name. A later key with the same name as
/// an earlier one is ignored (like `std::map::emplace` in Nix).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicKeys {
    keys: BTreeMap<String, PublicKey>,
}

impl PublicKeys {
    pub fn new() -> PublicKeys {
        PublicKeys::default()
    }

    /// Add `key` unless a key of that name is already present; returns whether it was
    /// added.
    pub fn insert(&mut self, key: PublicKey) -> bool {
        if self.keys.contains_key(key.name()) {
            return false;
        }
        self.keys.insert(key.name().to_string(), key);
        true
    }

    pub fn get(&self, name: &str) -> Option<&PublicKey> {
        self.keys.get(name)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }
}

impl FromIterator<PublicKey> for PublicKeys {
    fn from_iter<I: IntoIterator<Item = PublicKey>>(iter: I) -> Self {
        let mut keys = PublicKeys::new();
        for key in iter {
            keys.insert(key);
        }
        keys
    }
}

impl From<PublicKey> for PublicKeys {
    fn from(key: PublicKey) -> Self {
        std::iter::once(key).collect()
    }
}
