//! Golden vectors, all observed from Nix 2.8 (`nix-hash`, `nix hash to-*`).

use kiln_hash::{fold, nix32, Algorithm, Encoding, Error, Hash};
use proptest::prelude::*;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn length_table_matches_spec_1_1() {
    let expected = [
        (Algorithm::Md5, 16, 32, 26, 24),
        (Algorithm::Sha1, 20, 40, 32, 28),
        (Algorithm::Sha256, 32, 64, 52, 44),
        (Algorithm::Sha512, 64, 128, 103, 88),
    ];
    for (algo, bytes, b16, n32, b64) in expected {
        assert_eq!(algo.size(), bytes);
        assert_eq!(algo.base16_len(), b16);
        assert_eq!(algo.nix32_len(), n32);
        assert_eq!(algo.base64_len(), b64);
    }
}

#[test]
fn nix32_small_vectors_spec_1_3() {
    let mut one = vec![0u8; 20];
    one[0] = 1;
    assert_eq!(nix32::encode(&one), "00000000000000000000000000000001");
    let mut x20 = vec![0u8; 20];
    x20[0] = 0x20;
    assert_eq!(nix32::encode(&x20), "00000000000000000000000000000010");
    let mut top = vec![0u8; 20];
    top[19] = 0x80;
    assert_eq!(nix32::encode(&top), "h0000000000000000000000000000000");
    assert_eq!(
        nix32::encode(&unhex("0102030405060708090a0b0c0d0e0f1011121314")),
        "2h9i448h1w70s30b184hh1q60l2060h1"
    );
    assert_eq!(
        nix32::encode(&[0xff; 32]),
        "1zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"
    );
}

#[test]
fn nix32_rejects_overflow_and_uppercase() {
    let overflowing = format!("2{}", "z".repeat(51));
    assert_eq!(
        Hash::parse(&overflowing, Some(Algorithm::Sha256)),
        Err(Error::Nix32Overflow(overflowing.clone()))
    );
    let upper = "1B8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s";
    let err = Hash::parse(upper, Some(Algorithm::Sha256)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidCharacter {
                pos: 1,
                ch: 'B',
                ..
            }
        ),
        "{err:?}"
    );
}

struct Vector {
    input: &'static str,
    algo: Algorithm,
    base16: &'static str,
    nix32: &'static str,
    base64: &'static str,
}

const VECTORS: &[Vector] = &[
    Vector {
        input: "",
        algo: Algorithm::Sha256,
        base16: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        nix32: "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
        base64: "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    },
    Vector {
        input: "abc",
        algo: Algorithm::Md5,
        base16: "900150983cd24fb0d6963f7d28e17f72",
        nix32: "3jgzhjhz9zjvbb0kyj7jc500ch",
        base64: "kAFQmDzST7DWlj99KOF/cg==",
    },
    Vector {
        input: "abc",
        algo: Algorithm::Sha1,
        base16: "a9993e364706816aba3e25717850c26c9cd0d89d",
        nix32: "kpcd173cq987hw957sx6m0868wv3x6d9",
        base64: "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=",
    },
    Vector {
        input: "abc",
        algo: Algorithm::Sha256,
        base16: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        nix32: "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
        base64: "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=",
    },
    Vector {
        input: "abc",
        algo: Algorithm::Sha512,
        base16: "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        nix32: "2gs8k559z4rlahfx0y688s49m2vvszylcikrfinm30ly9rak69236nkam5ydvly1ai7xac99vxfc4ii84hawjbk876blyk1jfhkbbyx",
        base64: "3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw==",
    },
    Vector {
        input: "hello world",
        algo: Algorithm::Sha256,
        base16: "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
        nix32: "1sfdxziarxw8j3p80lvswgpq9i7smdyxmmsj5sjhhgjdjfwjfkdr",
        base64: "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=",
    },
];

#[test]
fn digest_and_encode_vectors_spec_1_7() {
    for v in VECTORS {
        let h = Hash::digest(v.algo, v.input);
        assert_eq!(h.to_base16(), v.base16, "{} {}", v.algo, v.input);
        assert_eq!(h.to_nix32(), v.nix32, "{} {}", v.algo, v.input);
        assert_eq!(h.to_base64(), v.base64, "{} {}", v.algo, v.input);
        assert_eq!(h.to_sri(), format!("{}-{}", v.algo, v.base64));
    }
}

#[test]
fn every_form_parses_back_spec_1_5() {
    for v in VECTORS {
        let h = Hash::digest(v.algo, v.input);
        for body in [v.base16, v.nix32, v.base64] {
            assert_eq!(Hash::parse(body, Some(v.algo)).unwrap(), h, "{body}");
            let typed = format!("{}:{}", v.algo, body);
            assert_eq!(Hash::parse(&typed, None).unwrap(), h, "{typed}");
        }
        assert_eq!(Hash::parse(&h.to_sri(), None).unwrap(), h);
        assert_eq!(
            Hash::parse(&v.base16.to_uppercase(), Some(v.algo)).unwrap(),
            h
        );
        assert_eq!(
            h.to_typed(Encoding::Nix32),
            format!("{}:{}", v.algo, v.nix32)
        );
    }
}

#[test]
fn parsing_rules_spec_1_5() {
    // Unpadded base64 after `sha256:` is the wrong length.
    let unpadded = "sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0";
    assert!(matches!(
        Hash::parse(unpadded, None),
        Err(Error::WrongLength { len: 43, .. })
    ));
    // SRI tolerates a missing trailing '='.
    let sri = "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0";
    assert_eq!(Hash::parse(sri, None).unwrap(), Hash::sha256("abc"));
    // Conflicting algorithms.
    assert!(matches!(
        Hash::parse(
            "sha1:kpcd173cq987hw957sx6m0868wv3x6d9",
            Some(Algorithm::Sha256)
        ),
        Err(Error::AlgorithmMismatch { .. })
    ));
    assert!(matches!(
        Hash::parse("blake3:abc", None),
        Err(Error::UnknownAlgorithm(_))
    ));
    assert!(matches!(
        Hash::parse(VECTORS[3].base16, None),
        Err(Error::MissingAlgorithm(_))
    ));
}

#[test]
fn fold_vector_spec_1_7() {
    let nar_hash = unhex("5fd7b1ceed90d1f1b332d7713a539cff3cb533dbefa0503ef2c61afdb1101858");
    let folded = fold(&nar_hash, 20);
    assert_eq!(
        kiln_hash::encoding::base16_encode(&folded),
        "b077e1f01f56cb0c0222cf293a539cff3cb533db"
    );
    assert_eq!(nix32::encode(&folded), "vcrvag7zki9klafg4810rjsn3zqf2xxh");
}

#[test]
fn multibyte_characters_are_reported_not_panicked_on() {
    // Regression: a non-ASCII character at the end of a nix32 body used to make the
    // error path slice inside the character and panic.
    let s = format!("sha256:{}é", "0".repeat(50));
    assert!(matches!(
        Hash::parse(&s, None),
        Err(Error::InvalidCharacter { ch: 'é', .. })
    ));
    let s = format!("sha1:{}é", "0".repeat(38));
    assert!(matches!(
        Hash::parse(&s, None),
        Err(Error::InvalidCharacter { ch: 'é', .. })
    ));
}

proptest! {
    #[test]
    fn nix32_round_trips(bytes in proptest::collection::vec(any::<u8>(), 1..70)) {
        let s = nix32::encode(&bytes);
        prop_assert_eq!(s.len(), nix32::encoded_len(bytes.len()));
        prop_assert_eq!(nix32::decode(s.as_bytes(), bytes.len()).unwrap(), bytes);
    }

    #[test]
    fn typed_forms_round_trip(data in proptest::collection::vec(any::<u8>(), 0..100), algo_index in 0usize..4) {
        let algo = Algorithm::ALL[algo_index];
        let h = Hash::digest(algo, &data);
        for enc in [Encoding::Base16, Encoding::Nix32, Encoding::Base64, Encoding::Sri] {
            prop_assert_eq!(Hash::parse(&h.to_typed(enc), None).unwrap(), h.clone());
        }
    }

    #[test]
    fn parse_never_panics(s in "(sha256:|sha1:|md5-)?[0-9a-zé€]{0,140}") {
        let _ = Hash::parse(&s, Some(Algorithm::Sha256));
        let _ = Hash::parse(&s, None);
    }
}
