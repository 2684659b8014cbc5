//! Checking `<keyname>:<base64 signature>` strings (the narinfo `Sig:` values).

use crate::{base64, Error, PublicKeys, Result};

/// Check the signature string `sig` over `data` against the trusted `keys`, as 2.8's
/// `verifyDetached` does:
///
/// * the string is split at the first `:`; a signature without a name, or whose key is
///   not in `keys`, is simply not trusted: `Ok(false)`;
/// * for a known key, a signature that is not base64 or not 64 bytes long is an error;
/// * otherwise the result is whether the ed25519 signature verifies.
pub fn verify_detached(data: &[u8], sig: &str, keys: &PublicKeys) -> Result<bool> {
    let Some((name, encoded)) = sig.split_once(':') else {
        return Ok(false);
    };
    let Some(key) = keys.get(name) else {
        return Ok(false);
    };
    let bytes = base64::decode_lenient(encoded).map_err(|ch| Error::SignatureBadBase64 {
        name: name.to_string(),
        ch,
    })?;
    let raw: [u8; 64] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| Error::SignatureWrongLength {
            name: name.to_string(),
            len: bytes.len(),
        })?;
    Ok(key.verify_raw(data, &raw))
}
