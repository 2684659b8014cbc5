//! What the parser, the type rules, hashing, fill-in and the JSON reader refuse, and
//! that each error says where and what.

mod common;

use std::collections::BTreeMap;

use bstr::BString;
use common::{data, sp, store_dir, MapStore};
use kiln_derivation::{
    fill_in_output_paths, hash_derivation_modulo, ContentAddressMethod, Derivation,
    DerivationOutput, DrvHashCache, Error, InputNode,
};
use kiln_hash::{Algorithm, Hash};
use kiln_store_path::StoreDir;

const SIMPLE: &str = "/nix/store/cxl3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv";

fn parse(text: &[u8]) -> Result<Derivation, Error> {
    Derivation::from_aterm(&store_dir(), text, "x")
}

fn simple_text() -> String {
    String::from_utf8(data("simple.drv")).unwrap()
}

fn parse_err(text: &str) -> (Error, String) {
    let e = parse(text.as_bytes()).expect_err(text);
    let msg = e.to_string();
    (e, msg)
}

#[test]
fn syntax_errors_say_what_was_expected_and_where() {
    let (e, msg) = parse_err("Derive([x");
    assert!(
        matches!(
            e,
            Error::Syntax {
                offset: 8,
                expected: "'('",
                found: Some(b'x')
            }
        ),
        "{e:?}"
    );
    assert_eq!(msg, "expected '(' at byte 8, found 'x'");

    let (e, msg) = parse_err("Derivx(");
    assert!(matches!(e, Error::Syntax { offset: 5, .. }), "{e:?}");
    assert!(msg.contains("'Derive(' or 'DrvWithVersion('"), "{msg}");

    let (e, _) = parse_err("");
    assert!(
        matches!(
            e,
            Error::Syntax {
                offset: 0,
                found: None,
                ..
            }
        ),
        "{e:?}"
    );

    // A missing comma between list items (Nix 2.8 would accept it).
    let text = simple_text().replace("[\"-c\",\"echo", "[\"-c\"\"echo");
    let (e, msg) = parse_err(&text);
    assert!(
        matches!(
            e,
            Error::Syntax {
                expected: "',' or ']'",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(msg.contains("found '\"'"), "{msg}");
}

#[test]
fn every_truncation_of_a_valid_drv_is_an_error_at_its_end() {
    let text = data("dep.drv");
    for len in 0..text.len() {
        match parse(&text[..len]) {
            Err(Error::Syntax {
                offset,
                found: None,
                ..
            }) => assert_eq!(offset, len),
            other => panic!("prefix of length {len}: {other:?}"),
        }
    }
}

#[test]
fn trailing_data_is_refused() {
    let mut text = data("simple.drv");
    let end = text.len();
    text.push(b'\n');
    let e = parse(&text).unwrap_err();
    assert!(
        matches!(e, Error::TrailingData { offset } if offset == end),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("data after the end of the derivation at byte {end}")
    );
}

#[test]
fn paths_must_be_valid_store_paths_of_this_store() {
    let text = data("simple.drv");
    // The same text read against another store directory.
    let e =
        Derivation::from_aterm(&StoreDir::new("/gnu/store").unwrap(), &text, "simple").unwrap_err();
    match &e {
        Error::BadStorePath { offset, path, .. } => {
            assert_eq!(*offset, 15);
            assert_eq!(path, "/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().starts_with(
        "invalid store path '/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple' at byte 15"
    ));

    // A relative path, a bad hash part and a sub-path, in input positions.
    for bad in [
        "relative",
        "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-x",
        "/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple/bin",
    ] {
        let t = format!("Derive([],[],[\"{bad}\"],\"s\",\"b\",[],[])");
        let e = parse(t.as_bytes()).unwrap_err();
        assert!(
            matches!(&e, Error::BadStorePath { offset: 14, path, .. } if path == bad),
            "{bad}: {e:?}"
        );
    }
}

#[test]
fn duplicates_are_refused_with_their_key() {
    let cases = [
        (
            r#"Derive([("out","","",""),("out","","","")],[],[],"s","b",[],[])"#,
            "output",
            "out",
        ),
        (
            r#"Derive([],[],[],"s","b",[],[("k","1"),("k","2")])"#,
            "environment variable",
            "k",
        ),
        (
            &format!(r#"Derive([],[("{SIMPLE}",["out"]),("{SIMPLE}",["out"])],[],"s","b",[],[])"#),
            "input derivation",
            "cxl3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv",
        ),
    ];
    for (text, what_want, key_want) in cases {
        match parse(text.as_bytes()).unwrap_err() {
            Error::Duplicate { what, key, .. } => {
                assert_eq!(what, what_want);
                assert_eq!(key, key_want);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn inconsistent_output_tuples_are_refused() {
    let p = "/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple";
    let cases = [
        (format!(r#"("out","{p}","r:sha256","")"#), "floating"),
        (format!(r#"("out","{p}","r:sha256","impure")"#), "impure"),
        (r#"("out","","","abc")"#.to_string(), "no hash algorithm"),
        (r#"("out","","sha3","")"#.to_string(), "unknown hash algorithm"),
        (format!(r#"("out","{p}","sha256","abc")"#), "wrong length"),
        (r#"("out","","sha256","ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")"#.to_string(), "store path"),
    ];
    for (tuple, want) in cases {
        let text = format!("Derive([{tuple}],[],[],\"s\",\"b\",[],[])");
        let e = parse(text.as_bytes()).unwrap_err();
        assert!(e.to_string().contains(want), "{tuple}: {e}");
    }
}

#[test]
fn unknown_version_and_bad_dynamic_nodes() {
    let e = parse(br#"DrvWithVersion("xp-other",[],[],[],"s","b",[],[])"#).unwrap_err();
    assert!(
        matches!(&e, Error::UnknownVersion { offset: 15, version } if version == "xp-other"),
        "{e:?}"
    );

    // The pair form of an input node is only allowed in the versioned form.
    let text = format!(r#"Derive([],[("{SIMPLE}",(["out"],[]))],[],"s","b",[],[])"#);
    let e = parse(text.as_bytes()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Syntax {
                expected: "'['",
                found: Some(b'('),
                ..
            }
        ),
        "{e:?}"
    );

    // An entry that asks for nothing.
    let text =
        format!(r#"DrvWithVersion("xp-dyn-drv",[],[("{SIMPLE}",([],[]))],[],"s","b",[],[])"#);
    assert!(parse(text.as_bytes()).is_err());

    // Hostile nesting is an error, not a stack overflow.
    let mut node = String::from("[\"o\"]");
    for _ in 0..10_000 {
        node = format!("([],[(\"o\",{node})])");
    }
    let text = format!(r#"DrvWithVersion("xp-dyn-drv",[],[("{SIMPLE}",{node})],[],"s","b",[],[])"#);
    let e = parse(text.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("levels of dynamic outputs"), "{e}");
}

#[test]
fn output_names_must_be_utf8() {
    let e = parse(b"Derive([(\"\xff\",\"\",\"\",\"\")],[],[],\"s\",\"b\",[],[])").unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidUtf8 {
                offset: 9,
                field: "output name"
            }
        ),
        "{e:?}"
    );
}

#[test]
fn string_contents_are_read_like_nix() {
    // Unknown escapes stand for the character itself, raw control bytes are kept,
    // and escapes are undone in unescaped fields too (2.8's reader does the same).
    let drv = parse(b"Derive([],[],[],\"pl\\at\",\"\\q\\n\x01\",[\"\\\\\"],[])").unwrap();
    assert_eq!(drv.platform, "plat");
    assert_eq!(drv.builder, "q\n\x01");
    assert_eq!(drv.args, vec![BString::from("\\")]);
}

#[test]
fn unsorted_entries_are_accepted_and_sorted() {
    let drv = parse(br#"Derive([],[],[],"s","b",[],[("b","2"),("a","1")])"#).unwrap();
    assert_eq!(drv.env.keys().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn a_fixed_output_path_is_recomputed_like_2_8() {
    // 2.8 validates the stored path of a fixed output but then derives it from the
    // hash; a wrong (but valid) path is accepted and printed corrected.
    let text = String::from_utf8(data("fod-flat256.drv")).unwrap();
    let wrong = text.replacen(
        "/nix/store/vc4z661820pgqi8iwd2z94jvph8rginq-fod\",\"sha256",
        "/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple\",\"sha256",
        1,
    );
    assert_ne!(wrong, text);
    let drv = Derivation::from_aterm(&store_dir(), wrong.as_bytes(), "fod").unwrap();
    assert_eq!(drv.to_aterm(&store_dir()).unwrap(), text.as_bytes());
}

fn out(o: DerivationOutput) -> BTreeMap<String, DerivationOutput> {
    BTreeMap::from([("out".to_string(), o)])
}

#[test]
fn derivation_type_errors_use_nix_messages() {
    let fixed = DerivationOutput::CAFixed {
        method: ContentAddressMethod::Flat,
        hash: Hash::zero(Algorithm::Sha256),
    };
    let floating = |algo| DerivationOutput::CAFloating {
        method: ContentAddressMethod::Recursive,
        algo,
    };
    let cases: Vec<(Vec<(&str, DerivationOutput)>, &str)> = vec![
        (vec![], "must have at least one output"),
        (
            vec![
                (
                    "out",
                    DerivationOutput::InputAddressed(sp(
                        "/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple",
                    )),
                ),
                ("dev", DerivationOutput::Deferred),
            ],
            "can't mix derivation output types",
        ),
        (
            vec![("out", fixed.clone()), ("dev", fixed.clone())],
            "only one fixed output is allowed for now",
        ),
        (
            vec![("bin", fixed.clone())],
            "single fixed output must be named \"out\"",
        ),
        (
            vec![
                ("out", floating(Algorithm::Sha256)),
                ("dev", floating(Algorithm::Sha1)),
            ],
            "all floating outputs must use the same hash type",
        ),
        (
            vec![
                ("out", floating(Algorithm::Sha256)),
                ("dev", DerivationOutput::Deferred),
            ],
            "can't mix derivation output types",
        ),
    ];
    for (outputs, want) in cases {
        let drv = Derivation {
            name: "t".into(),
            outputs: outputs
                .into_iter()
                .map(|(n, o)| (n.to_string(), o))
                .collect(),
            ..Derivation::default()
        };
        let e = drv.derivation_type().unwrap_err();
        assert_eq!(e.to_string(), format!("derivation 't': {want}"));
        // hashDerivationModulo goes through the same rules.
        let e = hash_derivation_modulo(
            &store_dir(),
            &drv,
            true,
            &mut DrvHashCache::new(),
            &mut |_| unreachable!(),
        )
        .unwrap_err();
        assert!(e.to_string().contains(want));
    }
}

fn dep_on_simple(output: &str) -> Derivation {
    Derivation {
        name: "d".into(),
        outputs: out(DerivationOutput::Deferred),
        input_drvs: BTreeMap::from([(sp(SIMPLE), InputNode::from_outputs([output]))]),
        platform: "s".into(),
        builder: "b".into(),
        ..Derivation::default()
    }
}

#[test]
fn hashing_errors_name_the_input() {
    let mut s = MapStore::new();
    s.add(
        sp(SIMPLE),
        Derivation::from_aterm(&store_dir(), &data("simple.drv"), "simple").unwrap(),
    );

    let e = hash_derivation_modulo(
        &store_dir(),
        &dep_on_simple("dev"),
        true,
        &mut DrvHashCache::new(),
        &mut |p| s.resolve(p),
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::MissingInputOutput { output, .. } if output == "dev"),
        "{e:?}"
    );
    assert!(e.to_string().contains(SIMPLE));

    let mut empty = MapStore::new();
    let e = hash_derivation_modulo(
        &store_dir(),
        &dep_on_simple("out"),
        true,
        &mut DrvHashCache::new(),
        &mut |p| empty.resolve(p),
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::Input { drv_path, .. } if drv_path == SIMPLE),
        "{e:?}"
    );
}

#[test]
fn a_resolver_that_loops_is_caught() {
    // X depends on Y, Y on X: impossible in a real store, but a resolver could lie.
    let x = sp("/nix/store/00000000000000000000000000000000-x.drv");
    let y = sp("/nix/store/11111111111111111111111111111111-y.drv");
    let mk = |dep: &kiln_store_path::StorePath| Derivation {
        name: "n".into(),
        outputs: out(DerivationOutput::Deferred),
        input_drvs: BTreeMap::from([(dep.clone(), InputNode::from_outputs(["out"]))]),
        ..Derivation::default()
    };
    let mut s = MapStore::new();
    s.add(x.clone(), mk(&y));
    s.add(y.clone(), mk(&x));
    let e = hash_derivation_modulo(
        &store_dir(),
        &mk(&x),
        true,
        &mut DrvHashCache::new(),
        &mut |p| s.resolve(p),
    )
    .unwrap_err();
    assert!(e.to_string().contains("depends on itself"), "{e}");
}

#[test]
fn fill_in_refuses_wrong_paths_and_env() {
    let simple = Derivation::from_aterm(&store_dir(), &data("simple.drv"), "simple").unwrap();
    let none =
        &mut |_: &kiln_store_path::StorePath| -> Result<Derivation, Error> { unreachable!() };

    let mut wrong = simple.clone();
    wrong.outputs.insert(
        "out".into(),
        DerivationOutput::InputAddressed(sp("/nix/store/00000000000000000000000000000000-simple")),
    );
    match fill_in_output_paths(&store_dir(), wrong, &mut DrvHashCache::new(), none).unwrap_err() {
        Error::OutputPathMismatch {
            output, computed, ..
        } => {
            assert_eq!(output, "out");
            assert_eq!(
                computed,
                "/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple"
            );
        }
        other => panic!("{other:?}"),
    }

    let mut wrong_env = simple.clone();
    wrong_env.env.insert("out".into(), "/somewhere".into());
    let e =
        fill_in_output_paths(&store_dir(), wrong_env, &mut DrvHashCache::new(), none).unwrap_err();
    assert!(
        matches!(&e, Error::EnvMismatch { var, .. } if var == "out"),
        "{e:?}"
    );

    // A deferred derivation cannot be given an output path.
    let mut s = MapStore::new();
    let ca = "/nix/store/cjx8cf94nqfhsz69f302f5qxdx75id6w-ca.drv";
    s.add(
        sp(ca),
        Derivation::from_drv_file(&store_dir(), &sp(ca), &data("ca.drv")).unwrap(),
    );
    let mut deferred =
        Derivation::from_aterm(&store_dir(), &data("deferred.drv"), "deferred").unwrap();
    deferred.outputs.insert(
        "out".into(),
        DerivationOutput::InputAddressed(sp(
            "/nix/store/00000000000000000000000000000000-deferred",
        )),
    );
    let e = fill_in_output_paths(&store_dir(), deferred, &mut DrvHashCache::new(), &mut |p| {
        s.resolve(p)
    })
    .unwrap_err();
    assert!(matches!(e, Error::DeferredOutputHasPath { .. }), "{e:?}");
}

#[test]
fn json_reader_errors_name_the_field() {
    let good: serde_json::Value = serde_json::from_slice(&data("fod-rec256.show.json")).unwrap();
    let inner = good["/nix/store/hjh2bm3gmkmqj07k21c858jg5k34h6mq-fod.drv"].clone();
    let read =
        |v: &serde_json::Value| kiln_derivation::json::from_json_value(&store_dir(), v, None);
    read(&inner).unwrap();

    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = inner.clone();
        f(&mut v);
        read(&v).unwrap_err()
    };
    let field_of = |e: Error| match e {
        Error::Json { field, .. } => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field_of(edit(&|v| {
            v.as_object_mut().unwrap().remove("system");
        })),
        "system"
    );
    assert_eq!(
        field_of(edit(&|v| v["args"] = serde_json::json!("x"))),
        "args"
    );
    assert_eq!(
        field_of(edit(&|v| v["args"] = serde_json::json!([1]))),
        "args[0]"
    );
    assert_eq!(
        field_of(edit(&|v| v["inputSrcs"] = serde_json::json!(["/tmp/x"]))),
        "inputSrcs[0]"
    );
    assert_eq!(
        field_of(edit(
            &|v| v["outputs"]["out"]["hashAlgo"] = serde_json::json!("r:sha3")
        )),
        "outputs.out.hashAlgo"
    );
    assert_eq!(
        field_of(edit(
            &|v| v["outputs"]["out"]["hash"] = serde_json::json!("00")
        )),
        "outputs.out.hash"
    );
    assert_eq!(
        field_of(edit(&|v| v["env"]["x"] = serde_json::json!("a\u{0}b"))),
        "env.x"
    );
    assert_eq!(
        field_of(edit(&|v| {
            v["env"].as_object_mut().unwrap().remove("name");
        })),
        "name"
    );
    let e = edit(&|v| {
        v["outputs"]["out"]["path"] =
            serde_json::json!("/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple")
    });
    assert!(matches!(e, Error::OutputPathMismatch { .. }), "{e:?}");

    let e = kiln_derivation::json::from_json_bytes(&store_dir(), b"{", None).unwrap_err();
    assert!(e.to_string().contains("not valid JSON"), "{e}");
}
