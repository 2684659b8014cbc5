//! Property tests: printing and parsing are inverse on random derivations (hostile
//! strings included), the parser never panics, and the JSON and derived-path
//! printers round-trip through their readers.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bstr::BString;
use common::store_dir;
use kiln_derivation::{
    ContentAddressMethod, Derivation, DerivationOutput, DerivedPath, InputNode, OutputsSpec,
    SingleDerivedPath,
};
use kiln_hash::{nix32, Algorithm, Hash};
use kiln_store_path::StorePath;
use proptest::prelude::*;

/// Bytes that stress the escaper: the five escaped bytes, other control bytes, `$`
/// and `${`, multi-byte UTF-8, and arbitrary (also invalid UTF-8) bytes.
fn nasty_bytes() -> impl Strategy<Value = BString> {
    let piece = prop_oneof![
        Just(b"\"".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"$".to_vec()),
        Just(b"${".to_vec()),
        Just(b"\\n".to_vec()),
        Just("é€😀".as_bytes().to_vec()),
        (0x01u8..0x20).prop_map(|b| vec![b]),
        Just(vec![0x7f]),
        any::<u8>().prop_map(|b| vec![b]),
        "[a-zA-Z0-9 /=.-]{1,6}".prop_map(|s| s.into_bytes()),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| BString::from(v.concat()))
}

/// Fields Nix writes unescaped can only round-trip without `"` and `\`.
fn raw_bytes() -> impl Strategy<Value = BString> {
    nasty_bytes().prop_map(|b| {
        BString::from(
            b.iter()
                .copied()
                .filter(|&c| c != b'"' && c != b'\\')
                .collect::<Vec<u8>>(),
        )
    })
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9+._?=-]{1,12}"
}

fn output_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("out".to_string()),
        Just("dev".to_string()),
        "[a-z0-9_-]{1,6}"
    ]
}

fn store_path(suffix: &'static str) -> impl Strategy<Value = StorePath> {
    (prop::collection::vec(any::<u8>(), 20), name()).prop_map(move |(digest, name)| {
        StorePath::from_base_name(&format!("{}-{}{}", nix32::encode(&digest), name, suffix))
            .unwrap()
    })
}

fn algorithm() -> impl Strategy<Value = Algorithm> {
    prop::sample::select(Algorithm::ALL.to_vec())
}

fn method() -> impl Strategy<Value = ContentAddressMethod> {
    prop_oneof![
        Just(ContentAddressMethod::Flat),
        Just(ContentAddressMethod::Recursive),
        Just(ContentAddressMethod::Text)
    ]
}

fn output() -> impl Strategy<Value = DerivationOutput> {
    prop_oneof![
        store_path("").prop_map(DerivationOutput::InputAddressed),
        (
            method(),
            algorithm(),
            prop::collection::vec(any::<u8>(), 64)
        )
            .prop_map(|(method, algo, bytes)| {
                // Text hashing is sha256-only; everything else takes any algorithm.
                let algo = if method == ContentAddressMethod::Text {
                    Algorithm::Sha256
                } else {
                    algo
                };
                DerivationOutput::CAFixed {
                    method,
                    hash: Hash::from_bytes(algo, &bytes[..algo.size()]).unwrap(),
                }
            }),
        (method(), algorithm())
            .prop_map(|(method, algo)| DerivationOutput::CAFloating { method, algo }),
        Just(DerivationOutput::Deferred),
        (method(), algorithm())
            .prop_map(|(method, algo)| DerivationOutput::Impure { method, algo }),
    ]
}

/// Input nodes, sometimes with dynamic outputs; never empty (the versioned form
/// refuses entries that ask for nothing).
fn node() -> impl Strategy<Value = InputNode> {
    let leaf = prop::collection::btree_set(output_name(), 1..3).prop_map(InputNode::from_outputs);
    leaf.prop_recursive(3, 8, 3, |inner| {
        (
            prop::collection::btree_set(output_name(), 0..3),
            prop::collection::btree_map(output_name(), inner, 1..3),
        )
            .prop_map(|(outputs, dynamic_outputs)| InputNode {
                outputs,
                dynamic_outputs,
            })
    })
}

fn plain_node() -> impl Strategy<Value = InputNode> {
    prop::collection::btree_set(output_name(), 0..3).prop_map(InputNode::from_outputs)
}

fn derivation() -> impl Strategy<Value = Derivation> {
    let inputs = prop_oneof![
        3 => prop::collection::btree_map(store_path(".drv"), plain_node(), 0..4),
        1 => prop::collection::btree_map(store_path(".drv"), node(), 0..4),
    ];
    (
        name(),
        prop::collection::btree_map(output_name(), output(), 0..4),
        inputs,
        prop::collection::btree_set(store_path(""), 0..4),
        raw_bytes(),
        nasty_bytes(),
        prop::collection::vec(nasty_bytes(), 0..5),
        prop::collection::btree_map(nasty_bytes(), nasty_bytes(), 0..6),
    )
        .prop_map(
            |(name, outputs, input_drvs, input_srcs, platform, builder, args, env)| Derivation {
                name,
                outputs,
                input_drvs,
                input_srcs,
                platform,
                builder,
                args,
                env,
            },
        )
}

/// Make a derivation the JSON reader can take back: JSON strings are Unicode and Nix
/// strings cannot hold NUL.
fn json_safe(mut drv: Derivation) -> Derivation {
    let fix = |b: &BString| BString::from(String::from_utf8_lossy(b).replace('\0', ""));
    drv.platform = fix(&drv.platform);
    drv.builder = fix(&drv.builder);
    drv.args = drv.args.iter().map(fix).collect();
    drv.env = drv.env.iter().map(|(k, v)| (fix(k), fix(v))).collect();
    drv
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn print_parse_print_is_identity(drv in derivation()) {
        let sd = store_dir();
        let text = drv.to_aterm(&sd).unwrap();
        let parsed = Derivation::from_aterm(&sd, &text, &drv.name)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", BString::from(text.clone()))))?;
        prop_assert_eq!(&parsed, &drv);
        prop_assert_eq!(parsed.to_aterm(&sd).unwrap(), text.clone());
        prop_assert_eq!(text.starts_with(b"DrvWithVersion("), drv.has_dynamic_inputs());
    }

    #[test]
    fn json_round_trips_through_the_reader(drv in derivation().prop_map(json_safe)) {
        let sd = store_dir();
        let path = drv.drv_path(&sd);
        prop_assume!(path.is_ok());
        let path = path.unwrap();
        let json = kiln_derivation::json::show_derivations(&sd, [(&path, &drv)]).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{}", BString::from(json.clone()))))?;
        let inner = &value[sd.display(&path)];
        let back = kiln_derivation::json::from_json_value(&sd, inner, Some(&drv.name))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, drv);
    }

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Derivation::from_aterm(&store_dir(), &bytes, "x");
        let mut prefixed = b"Derive([".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = Derivation::from_aterm(&store_dir(), &prefixed, "x");
    }

    #[test]
    fn parser_never_panics_on_mutated_drvs(
        drv in derivation(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let sd = store_dir();
        let mut text = drv.to_aterm(&sd).unwrap();
        for (index, byte, kind) in edits {
            if text.is_empty() {
                break;
            }
            let i = index.index(text.len());
            match kind {
                0 => text[i] = byte,
                1 => { text.remove(i); }
                _ => text.insert(i, byte),
            }
        }
        if let Ok(parsed) = Derivation::from_aterm(&sd, &text, &drv.name) {
            // Whatever parses must also print and JSON-print without panicking.
            let _ = parsed.to_aterm(&sd);
            let _ = kiln_derivation::json::show_derivations(&sd, [(&StorePath::from_base_name("00000000000000000000000000000000-x.drv").unwrap(), &parsed)]);
        }
    }

    #[test]
    fn derived_paths_round_trip(
        root in store_path(".drv"),
        chain in prop::collection::vec("[a-z0-9_-]{1,5}", 0..4),
        outputs in prop_oneof![Just(None), prop::collection::btree_set("[a-z0-9_-]{1,5}", 1..4).prop_map(Some)],
    ) {
        let sd = store_dir();
        let mut single = SingleDerivedPath::Opaque(root);
        for o in chain {
            single = SingleDerivedPath::Built { drv_path: Box::new(single), output: o };
        }
        let path = DerivedPath::Built {
            drv_path: single,
            outputs: outputs.map_or(OutputsSpec::All, |o: BTreeSet<String>| OutputsSpec::Names(o)),
        };
        let text = path.to_string(&sd);
        prop_assert_eq!(DerivedPath::parse(&sd, &text).unwrap(), path);
    }
}

#[test]
fn large_env_values_parse_quickly() {
    // A `.drv` can be megabytes (e.g. a big `__json`); parsing must stay linear.
    // (The bound is loose because tests run unoptimised on a shared machine.)
    let big = BString::from("x\\\"y".repeat(250_000));
    let drv = Derivation {
        name: "big".into(),
        outputs: BTreeMap::from([("out".to_string(), DerivationOutput::Deferred)]),
        env: BTreeMap::from([(BString::from("__json"), big)]),
        ..Derivation::default()
    };
    let text = drv.to_aterm(&store_dir()).unwrap();
    let start = std::time::Instant::now();
    let parsed = Derivation::from_aterm(&store_dir(), &text, "big").unwrap();
    assert_eq!(parsed, drv);
    assert!(start.elapsed().as_secs_f64() < 2.0, "{:?}", start.elapsed());
}
