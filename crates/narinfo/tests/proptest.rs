//! Property tests: print -> parse round trip, and no panics on arbitrary input.

use std::collections::BTreeSet;

use kiln_hash::{Algorithm, Hash};
use kiln_narinfo::{verify_detached, NarInfo, PublicKey, PublicKeys, SecretKey};
use kiln_store_path::{ContentAddress, FileIngestionMethod, StoreDir, StorePath};
use proptest::prelude::*;

fn store_path() -> impl Strategy<Value = StorePath> {
    ("[0-9a-df-np-sv-z]{32}", "[A-Za-z0-9+._?=-]{1,40}")
        .prop_map(|(hash, name)| StorePath::from_base_name(&format!("{hash}-{name}")).unwrap())
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec())
}

fn hash_of(algorithm: Algorithm) -> impl Strategy<Value = Hash> {
    prop::collection::vec(any::<u8>(), algorithm.size())
        .prop_map(move |bytes| Hash::from_bytes(algorithm, &bytes).unwrap())
}

fn any_hash() -> impl Strategy<Value = Hash> {
    algorithm().prop_flat_map(hash_of)
}

fn content_address() -> impl Strategy<Value = ContentAddress> {
    prop_oneof![
        hash_of(Algorithm::Sha256).prop_map(ContentAddress::Text),
        (any::<bool>(), any_hash()).prop_map(|(recursive, h)| {
            let method = if recursive {
                FileIngestionMethod::Recursive
            } else {
                FileIngestionMethod::Flat
            };
            ContentAddress::Fixed(method, h)
        }),
    ]
}

/// A single-line value (anything but LF).
fn line_value(min: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[^\n]{{{min},30}}")).unwrap()
}

prop_compose! {
    fn narinfo()(
        path in store_path(),
        url in line_value(1),
        compression in line_value(1),
        file_hash in proptest::option::of(any_hash()),
        file_size in any::<u64>(),
        nar_hash in any_hash(),
        nar_size in 1..=u64::MAX,
        references in prop::collection::btree_set(store_path(), 0..5),
        deriver in proptest::option::of(store_path()),
        system in proptest::option::of(line_value(1)),
        sigs in prop::collection::btree_set(line_value(0), 0..4),
        ca in proptest::option::of(content_address()),
    ) -> NarInfo {
        NarInfo {
            path, url, compression, file_hash, file_size, nar_hash, nar_size,
            references, deriver, system, sigs, ca,
        }
    }
}

/// Text shaped like a narinfo: known and unknown keys with random values, random
/// separators and line ends.
fn narinfo_like() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "StorePath",
        "URL",
        "Compression",
        "FileHash",
        "FileSize",
        "NarHash",
        "NarSize",
        "References",
        "Deriver",
        "System",
        "Sig",
        "CA",
        "Other",
        "",
    ]);
    let value = prop_oneof![
        Just("/nix/store/rnsh685m80sc5ikbvk76sy5b0q80xpff-tree".to_string()),
        Just("sha256:0n0q22qzs6n6y8z5187gvcrvag7zki9klwfp6arz3lchxp7b3msz".to_string()),
        Just("fixed:r:sha256:0n0q22qzs6n6y8z5187gvcrvag7zki9klwfp6arz3lchxp7b3msz".to_string()),
        Just("58zxgd6vvcq48ijl1irh1dj8ad95wykv-iaout".to_string()),
        "[0-9]{1,25}",
        ".{0,60}",
    ];
    let sep = prop::sample::select(vec![": ", ":", ":\n", ":é", " : "]);
    let end = prop::sample::select(vec!["\n", "\n", "\n", "", "\r\n", "é"]);
    prop::collection::vec((key, sep, value, end), 0..14).prop_map(|records| {
        records
            .into_iter()
            .map(|(k, s, v, e)| format!("{k}{s}{v}{e}"))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn print_parse_round_trip(info in narinfo()) {
        let dir = StoreDir::default();
        let text = info.to_text(&dir);
        let parsed = NarInfo::parse(&dir, &text);
        prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed, text);
        let parsed = parsed.unwrap();
        prop_assert_eq!(&parsed, &info);
        prop_assert_eq!(parsed.to_text(&dir), text);
    }

    #[test]
    fn parse_never_panics(text in ".*") {
        let _ = NarInfo::parse(&StoreDir::default(), &text);
    }

    #[test]
    fn parse_never_panics_on_narinfo_like_text(text in narinfo_like()) {
        let dir = StoreDir::default();
        if let Ok(info) = NarInfo::parse(&dir, &text) {
            // Whatever was accepted prints to something that reads back the same.
            let printed = info.to_text(&dir);
            prop_assert_eq!(NarInfo::parse(&dir, &printed).unwrap(), info);
        }
    }

    #[test]
    fn key_and_signature_parsing_never_panics(text in ".*", data in ".*") {
        let _ = SecretKey::parse(&text);
        let _ = PublicKey::parse(&text);
        let keys: PublicKeys = SecretKey::from_seed("k", &[3; 32]).unwrap().to_public_key().into();
        let _ = verify_detached(data.as_bytes(), &text, &keys);
        let _ = verify_detached(data.as_bytes(), &format!("k:{text}"), &keys);
    }

    #[test]
    fn fingerprint_sorts_and_joins_full_paths(info in narinfo()) {
        let dir = StoreDir::default();
        let fp = info.fingerprint(&dir).unwrap();
        let refs: BTreeSet<String> = info.references.iter().map(|r| dir.display(r)).collect();
        let expected = format!(
            "1;{};{};{};{}",
            dir.display(&info.path),
            info.nar_hash,
            info.nar_size,
            refs.into_iter().collect::<Vec<_>>().join(",")
        );
        prop_assert_eq!(fp, expected);
    }
}

proptest! {
    // ed25519 is slow in debug builds: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn sign_then_verify(seed in any::<[u8; 32]>(), data in prop::collection::vec(any::<u8>(), 0..200)) {
        let sk = SecretKey::from_seed("cache.example.org-1", &seed).unwrap();
        let sk = SecretKey::parse(&sk.to_nix_string()).unwrap();
        let pk = PublicKey::parse(&sk.to_public_key().to_string()).unwrap();
        let keys: PublicKeys = pk.into();
        let sig = sk.sign(&data);
        prop_assert!(verify_detached(&data, &sig, &keys).unwrap());
        let mut other = data.clone();
        other.push(0);
        prop_assert!(!verify_detached(&other, &sig, &keys).unwrap());
    }
}
