//! Key parsing, signing and signature checking (§7.4).

use kiln_narinfo::{verify_detached, Error, KeyKind, PublicKey, PublicKeys, SecretKey};

const SECRET: &str = "test-key-1:WJ9Rd+//x/ALL+9grDCy1MHoxoXZo7NXL0ZzkAb19XyN7ZRQhpJ/36vv0TCswT5spELANqWdTaanS1nKl+zcrg==";
const PUBLIC: &str = "test-key-1:je2UUIaSf9+r79EwrME+bKRCwDalnU2mp0tZypfs3K4=";
const FINGERPRINT: &str = "1;/nix/store/rnsh685m80sc5ikbvk76sy5b0q80xpff-tree;sha256:0n0q22qzs6n6y8z5187gvcrvag7zki9klwfp6arz3lchxp7b3msz;880;";
const SIG: &str = "test-key-1:tTITg1ydc7O+8uPuakdpvh5UPh5uVkcQtKSwP1SKw9LmHy0j4vR1yIOBmYtTzateiVjEsIB0pqqMjnORW+UzCA==";

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn b64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn key_text_errors() {
    use KeyKind::*;
    assert_eq!(
        SecretKey::parse("no-colon").unwrap_err(),
        Error::KeyMissingColon { kind: Secret }
    );
    assert_eq!(
        PublicKey::parse(":je2UUIaSf9+r79EwrME+bKRCwDalnU2mp0tZypfs3K4=").unwrap_err(),
        Error::KeyEmptyName { kind: Public }
    );
    assert_eq!(
        SecretKey::parse("name:").unwrap_err(),
        Error::KeyEmpty {
            kind: Secret,
            name: "name".into()
        }
    );
    assert_eq!(
        PublicKey::parse("name:je2UUIaSf9$r79EwrME+bKRCwDalnU2mp0tZypfs3K4=").unwrap_err(),
        Error::KeyBadBase64 {
            kind: Public,
            name: "name".into(),
            ch: '$'
        }
    );
    assert_eq!(
        SecretKey::parse(PUBLIC).unwrap_err(),
        Error::KeyWrongLength {
            kind: Secret,
            name: "test-key-1".into(),
            len: 32,
            expected: 64
        }
    );
    let err = PublicKey::parse(SECRET).unwrap_err();
    assert_eq!(
        err,
        Error::KeyWrongLength {
            kind: Public,
            name: "test-key-1".into(),
            len: 64,
            expected: 32
        }
    );
    assert_eq!(
        err.to_string(),
        "public key 'test-key-1' is not valid: 64 bytes, expected 32"
    );
}

#[test]
fn secret_key_public_half_must_match_seed() {
    let (name, material) = SECRET.split_once(':').unwrap();
    let mut bytes = b64_decode(material);
    bytes[40] ^= 1;
    let err = SecretKey::parse(&format!("{name}:{}", b64(&bytes))).unwrap_err();
    assert_eq!(
        err,
        Error::SecretKeyMismatch {
            name: "test-key-1".into()
        }
    );
    assert!(err.to_string().contains("test-key-1"));
}

#[test]
fn key_files_with_trailing_newline_and_colons() {
    // Nix's base64 reader skips newlines, so a key file ending in LF still reads.
    let sk = SecretKey::parse(&format!("{SECRET}\n")).unwrap();
    assert_eq!(sk.to_nix_string(), SECRET);
    let pk = PublicKey::parse(&format!("{PUBLIC}\n")).unwrap();
    assert_eq!(pk.to_string(), PUBLIC);
    // Split at the first ':' only: the rest is key material (and ':' is not base64).
    assert!(matches!(
        PublicKey::parse("a:b:c").unwrap_err(),
        Error::KeyBadBase64 { ch: ':', .. }
    ));
}

#[test]
fn constructors_check_names() {
    let seed = [7u8; 32];
    assert_eq!(
        SecretKey::from_seed("", &seed).unwrap_err(),
        Error::KeyEmptyName {
            kind: KeyKind::Secret
        }
    );
    assert!(matches!(
        SecretKey::from_seed("a:b", &seed).unwrap_err(),
        Error::KeyNameHasColon { .. }
    ));
    assert!(matches!(
        PublicKey::from_bytes("", [0; 32]).unwrap_err(),
        Error::KeyEmptyName { .. }
    ));
    let sk = SecretKey::from_seed("k", &seed).unwrap();
    let reparsed = SecretKey::parse(&sk.to_nix_string()).unwrap();
    assert_eq!(reparsed.to_public_key(), sk.to_public_key());
}

#[test]
fn secret_key_debug_is_redacted() {
    let sk = SecretKey::parse(SECRET).unwrap();
    let debug = format!("{sk:?}");
    assert!(debug.contains("test-key-1"));
    assert!(!debug.contains("WJ9Rd"));
}

#[test]
fn verify_detached_rules() {
    let keys: PublicKeys = PublicKey::parse(PUBLIC).unwrap().into();
    let data = FINGERPRINT.as_bytes();
    assert!(verify_detached(data, SIG, &keys).unwrap());
    // Unknown key or no name: not trusted, not an error (even if malformed).
    assert!(!verify_detached(data, "other:AAAA", &keys).unwrap());
    assert!(!verify_detached(data, "no colon", &keys).unwrap());
    assert!(!verify_detached(data, ":AAAA", &keys).unwrap());
    assert!(!verify_detached(data, SIG, &PublicKeys::new()).unwrap());
    // Known key, malformed signature: an error, as in 2.8.
    assert_eq!(
        verify_detached(data, "test-key-1:AAAA", &keys).unwrap_err(),
        Error::SignatureWrongLength {
            name: "test-key-1".into(),
            len: 3
        }
    );
    assert_eq!(
        verify_detached(data, "test-key-1:A*AA", &keys).unwrap_err(),
        Error::SignatureBadBase64 {
            name: "test-key-1".into(),
            ch: '*'
        }
    );
    // Signature bit flipped: fails.
    let (name, material) = SIG.split_once(':').unwrap();
    let mut raw = b64_decode(material);
    raw[5] ^= 0x10;
    let flipped = format!("{name}:{}", b64(&raw));
    assert!(!verify_detached(data, &flipped, &keys).unwrap());
    // Same name, different key: fails.
    let other = SecretKey::from_seed("test-key-1", &[1; 32]).unwrap();
    let other_keys: PublicKeys = other.to_public_key().into();
    assert!(!verify_detached(data, SIG, &other_keys).unwrap());
    assert!(verify_detached(data, &other.sign(data), &other_keys).unwrap());
    // Bytes that are not a curve point never verify (and do not panic).
    let mut bad_point = [0xffu8; 32];
    bad_point[31] = 0x7f;
    let junk: PublicKeys = PublicKey::from_bytes("test-key-1", bad_point)
        .unwrap()
        .into();
    assert!(!verify_detached(data, SIG, &junk).unwrap());
}

#[test]
fn public_key_set_keeps_first_of_a_name() {
    let first = PublicKey::parse(PUBLIC).unwrap();
    let second = PublicKey::from_bytes("test-key-1", [9; 32]).unwrap();
    let mut keys = PublicKeys::new();
    assert!(keys.insert(first.clone()));
    assert!(!keys.insert(second));
    assert_eq!(keys.get("test-key-1"), Some(&first));
    assert_eq!(keys.len(), 1);
    assert!(!keys.is_empty());
    assert_eq!(keys.iter().count(), 1);
}
