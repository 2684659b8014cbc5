//! Golden vectors: `.drv` files as `nix-instantiate` 2.8 writes them (tests/data/, byte
//! for byte), with their `.drv` and output paths, for every derivation type (input
//! addressed, fixed output, floating and fixed content addressed, impure, deferred,
//! dynamic). Those known only by their paths (the other fixed-output rows, `ctl`,
//! `deferred2`, `onimpure`) are rebuilt here from their Nix attributes and must land on
//! the paths Nix gave them.

mod common;

use std::collections::BTreeMap;

use bstr::BString;
use common::{data, sp, store_dir, MapStore};
use kiln_derivation::hash_modulo::{hash_modulo_text, input_hash};
use kiln_derivation::output_paths::fixed_output_path;
use kiln_derivation::{
    fill_in_output_paths, hash_derivation_modulo, ContentAddressMethod, Derivation,
    DerivationOutput, DerivationType, DrvHashCache, DrvHashKind, DrvOutputId, InputNode,
};
use kiln_hash::{Algorithm, Hash};
use kiln_store_path::{downstream_placeholder, output_placeholder};

/// (file, `.drv` path) for every `.drv` text in tests/data/.
const VECTORS: &[(&str, &str)] = &[
    (
        "simple",
        "/nix/store/cxl3gdvrylxaanfsn3n3a8lhnh2jfrc5-simple.drv",
    ),
    (
        "multi",
        "/nix/store/mnjxjzmmfip5fyy68ljris8cqvix037m-multi.drv",
    ),
    ("dep", "/nix/store/64mazh6gmc3gbvlinqw0xqv2ynj1vchl-dep.drv"),
    (
        "fod-flat256",
        "/nix/store/kzi4vp5ajz971rh25miijv3dqb0jrwfd-fod.drv",
    ),
    (
        "depfod",
        "/nix/store/3jj50b6sx5h6zsslh5pvvwcxhb7spcdx-depfod.drv",
    ),
    (
        "withsrc",
        "/nix/store/dxq4yhh8nh3bnx64mgvsvb19w0gai8vz-withsrc.drv",
    ),
    ("esc", "/nix/store/r1qlyaj7kvric3g9mw0hii3dxlqn1r3q-esc.drv"),
    ("sa", "/nix/store/454pk1va4cnq873ys8p447ha8aca4lww-sa.drv"),
    ("ph", "/nix/store/1alhm276yq8rhk8cd0ihynxkwsjfdv5s-ph.drv"),
    ("ca", "/nix/store/cjx8cf94nqfhsz69f302f5qxdx75id6w-ca.drv"),
    (
        "caflat",
        "/nix/store/72znkm40m8nn0il1rmk7i19qb5kq40bz-caflat.drv",
    ),
    (
        "deferred",
        "/nix/store/fjmz7ngz8ya1vvr7kk8gm8padd9230qc-deferred.drv",
    ),
    (
        "impure",
        "/nix/store/6a9zcr3mgmw009zzhavqlg5abs3x8gf4-impure.drv",
    ),
];

fn load(file: &str, drv_path: &str) -> Derivation {
    let path = sp(drv_path);
    Derivation::from_drv_file(&store_dir(), &path, &data(&format!("{file}.drv")))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn hex(h: &Hash) -> String {
    h.to_base16()
}

/// Every spec vector, plus the fixed-output inputs of `depfod` rebuilt from attributes.
fn store() -> MapStore {
    let mut s = MapStore::new();
    for (file, path) in VECTORS {
        s.add(sp(path), load(file, path));
    }
    for (_, path, drv) in fod_rows() {
        s.add(sp(path), drv);
    }
    s
}

/// A derivation as `derivation ({ system; builder; } // attrs)` would start it: env
/// from the attributes, outputs still to be filled in.
fn mk(name: &str, attrs: &[(&str, &str)], outputs: DerivationOutput) -> Derivation {
    let mut env: BTreeMap<BString, BString> = BTreeMap::new();
    env.insert("builder".into(), "/bin/sh".into());
    env.insert("system".into(), "x86_64-linux".into());
    env.insert("name".into(), name.into());
    for (k, v) in attrs {
        env.insert((*k).into(), (*v).into());
    }
    Derivation {
        name: name.to_string(),
        outputs: BTreeMap::from([("out".to_string(), outputs)]),
        platform: "x86_64-linux".into(),
        builder: "/bin/sh".into(),
        env,
        ..Derivation::default()
    }
}

/// The fixed-output rows of §4.10: (output path, `.drv` path, derivation).
fn fod_rows() -> Vec<(&'static str, &'static str, Derivation)> {
    let fod = |attrs: &[(&str, &str)], method: ContentAddressMethod, algo: Algorithm| {
        let hash_attr = attrs
            .iter()
            .find(|(k, _)| *k == "outputHash")
            .map(|(_, v)| *v)
            .unwrap();
        // The evaluator's rule: an empty outputHash is the all-zero hash.
        let hash = if hash_attr.is_empty() {
            Hash::zero(algo)
        } else {
            Hash::parse(hash_attr, Some(algo)).unwrap()
        };
        mk("fod", attrs, DerivationOutput::CAFixed { method, hash })
    };
    let flat = ContentAddressMethod::Flat;
    let rec = ContentAddressMethod::Recursive;
    let rec256 = [
        ("outputHashMode", "recursive"),
        ("outputHashAlgo", "sha256"),
        (
            "outputHash",
            "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s",
        ),
    ];
    let mut rec256b = rec256.to_vec();
    rec256b.push(("extra", "different builder env"));
    let empty = mk(
        "empty",
        &[
            ("outputHashAlgo", "sha256"),
            ("outputHashMode", "recursive"),
            ("outputHash", ""),
        ],
        DerivationOutput::CAFixed {
            method: rec,
            hash: Hash::zero(Algorithm::Sha256),
        },
    );
    vec![
        (
            "/nix/store/vc4z661820pgqi8iwd2z94jvph8rginq-fod",
            "/nix/store/kzi4vp5ajz971rh25miijv3dqb0jrwfd-fod.drv",
            fod(
                &[
                    ("outputHashMode", "flat"),
                    ("outputHashAlgo", "sha256"),
                    ("outputHash", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
                ],
                flat,
                Algorithm::Sha256,
            ),
        ),
        (
            "/nix/store/q3vr3xw3x1r9p11mbb0cy4isrv9nifgh-fod",
            "/nix/store/n7a22yzjm5xc1yqih0dcz3w91q3wzrk0-fod.drv",
            fod(
                &[
                    ("outputHashAlgo", "sha1"),
                    ("outputHash", "a9993e364706816aba3e25717850c26c9cd0d89d"),
                ],
                flat,
                Algorithm::Sha1,
            ),
        ),
        (
            "/nix/store/0pmy5ihcf0ffycfqda9vgizjiqlpnjga-fod",
            "/nix/store/45jfw88b9iippv7an05c7qkvdm65vqp6-fod.drv",
            fod(
                &[(
                    "outputHash",
                    "sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw==",
                )],
                flat,
                Algorithm::Sha512,
            ),
        ),
        (
            "/nix/store/lnpgaw3h64fdzcy9g0afhzkr8wappy4b-fod",
            "/nix/store/hjh2bm3gmkmqj07k21c858jg5k34h6mq-fod.drv",
            fod(&rec256, rec, Algorithm::Sha256),
        ),
        (
            "/nix/store/lnpgaw3h64fdzcy9g0afhzkr8wappy4b-fod",
            "/nix/store/p5bpk2b9q8295ay940c10im15bm39264-fod.drv",
            fod(&rec256b, rec, Algorithm::Sha256),
        ),
        (
            "/nix/store/gl32gdpldjb569sqw93jw94i1mkvq0lz-fod",
            "/nix/store/0830v1jadk2v3dlv7awgibniy9lkj1c1-fod.drv",
            fod(
                &[
                    ("outputHashMode", "recursive"),
                    ("outputHash", "sha1:kpcd173cq987hw957sx6m0868wv3x6d9"),
                ],
                rec,
                Algorithm::Sha1,
            ),
        ),
        (
            "/nix/store/8a21x6j5s21v3lpqqy5grh7cnanx22vv-fod",
            "/nix/store/9h237v1rcsfqgfaikhbr0p0vk12lh707-fod.drv",
            fod(
                &[("outputHashAlgo", "md5"), ("outputHash", "900150983cd24fb0d6963f7d28e17f72")],
                flat,
                Algorithm::Md5,
            ),
        ),
        (
            "/nix/store/wazh3cjw9zy9wr02aqyw9p83774pcli9-empty",
            "/nix/store/s6rgsmf563yafxn6mwdnja4xky1a3mim-empty.drv",
            empty,
        ),
    ]
}

#[test]
fn every_spec_vector_round_trips_byte_for_byte() {
    for (file, path) in VECTORS {
        let bytes = data(&format!("{file}.drv"));
        let drv = load(file, path);
        assert_eq!(
            BString::from(drv.to_aterm(&store_dir()).unwrap()),
            BString::from(bytes),
            "{file}"
        );
    }
}

#[test]
fn every_spec_vector_has_its_drv_path() {
    for (file, path) in VECTORS {
        let drv = load(file, path);
        assert_eq!(
            store_dir().display(&drv.drv_path(&store_dir()).unwrap()),
            *path,
            "{file}"
        );
    }
}

#[test]
fn simple_file_hash_is_the_spec_value() {
    assert_eq!(
        hex(&Hash::sha256(data("simple.drv"))),
        "808797a7494f84efd608ff97f9c3eab7a591a6b9adcf4a48ac02b349d1a46670"
    );
}

#[test]
fn fixed_output_rows_give_spec_paths_and_output_lines() {
    for (out_path, drv_path, drv) in fod_rows() {
        let out = drv.outputs["out"]
            .path(&store_dir(), &drv.name, "out")
            .unwrap()
            .unwrap();
        assert_eq!(store_dir().display(&out), out_path, "{drv_path}");
        // The evaluator adds env `out`; fill-in must do the same and land on the path.
        let filled = fill_in_output_paths(&store_dir(), drv, &mut DrvHashCache::new(), &mut |p| {
            panic!("no inputs expected, asked for {p}")
        })
        .unwrap();
        assert_eq!(filled.env[b"out".as_slice()], out_path.as_bytes());
        assert_eq!(
            store_dir().display(&filled.drv_path(&store_dir()).unwrap()),
            drv_path
        );
        assert_eq!(
            filled.derivation_type().unwrap(),
            DerivationType::FixedOutput
        );
        // Reparse the printed text: the fixed path is recomputed from the hash.
        let text = filled.to_aterm(&store_dir()).unwrap();
        let again = Derivation::from_drv_file(&store_dir(), &sp(drv_path), &text).unwrap();
        assert_eq!(again, filled);
    }
}

#[test]
fn fixed_output_line_of_the_first_row_is_verbatim() {
    let (_, _, drv) = &fod_rows()[0];
    let filled = fill_in_output_paths(
        &store_dir(),
        drv.clone(),
        &mut DrvHashCache::new(),
        &mut |_| unreachable!(),
    )
    .unwrap();
    assert_eq!(
        filled.to_aterm(&store_dir()).unwrap(),
        data("fod-flat256.drv")
    );
    let empty = &fod_rows()[7].2;
    let text = String::from_utf8(empty.to_aterm(&store_dir()).unwrap()).unwrap();
    assert!(text.contains(&format!(
        "(\"out\",\"/nix/store/wazh3cjw9zy9wr02aqyw9p83774pcli9-empty\",\"r:sha256\",\"{}\")",
        "0".repeat(64)
    )));
}

#[test]
fn masked_texts_of_simple_dep_depfod_are_verbatim() {
    let mut s = store();
    let mut cache = DrvHashCache::new();
    for (file, path, digest) in [
        (
            "simple",
            VECTORS[0].1,
            "595072af4f49a7e6e3c199450fd82e69e589fd048130ced35ea820a92858d271",
        ),
        (
            "dep",
            VECTORS[2].1,
            "3a64dd2fa74e3ef8aeccef726bbc2a880fef9cbda09ae0fb63c4d1984897a167",
        ),
        (
            "depfod",
            VECTORS[4].1,
            "5bbe8270357f93c0ef28c8980179085ea5b6ab8b5e5e6c70320d67e115c294f7",
        ),
    ] {
        let drv = load(file, path);
        let (text, kind) =
            hash_modulo_text(&store_dir(), &drv, true, &mut cache, &mut |p| s.resolve(p))
                .unwrap()
                .unwrap();
        assert_eq!(
            BString::from(text.clone()),
            BString::from(data(&format!("{file}.masked.aterm"))),
            "{file}"
        );
        assert_eq!(kind, DrvHashKind::Regular);
        assert_eq!(hex(&Hash::sha256(&text)), digest, "{file}");
        let h = hash_derivation_modulo(&store_dir(), &drv, true, &mut cache, &mut |p| s.resolve(p))
            .unwrap();
        assert_eq!(hex(&h.hashes["out"]), digest);
    }
}

#[test]
fn inputs_are_hashed_unmasked() {
    let mut s = store();
    let mut cache = DrvHashCache::new();
    let simple = input_hash(&store_dir(), &sp(VECTORS[0].1), &mut cache, &mut |p| {
        s.resolve(p)
    })
    .unwrap();
    // With no inputs of its own, an input's unmasked hash is its file hash.
    assert_eq!(
        hex(&simple.hashes["out"]),
        "808797a7494f84efd608ff97f9c3eab7a591a6b9adcf4a48ac02b349d1a46670"
    );
    let multi = input_hash(&store_dir(), &sp(VECTORS[1].1), &mut cache, &mut |p| {
        s.resolve(p)
    })
    .unwrap();
    for o in ["out", "dev", "lib"] {
        assert_eq!(
            hex(&multi.hashes[o]),
            "99530014f023a2f9640d1eefc204d5e83ec86d49e88c367d99deb7281fc96ab0"
        );
    }
}

#[test]
fn fixed_inputs_hash_to_spec_values_and_merge() {
    let mut s = store();
    let mut cache = DrvHashCache::new();
    let mut h = |path: &str| {
        let r = input_hash(&store_dir(), &sp(path), &mut cache, &mut |p| s.resolve(p)).unwrap();
        assert_eq!(r.kind, DrvHashKind::Regular);
        hex(&r.hashes["out"])
    };
    let flat = h("/nix/store/kzi4vp5ajz971rh25miijv3dqb0jrwfd-fod.drv");
    let rec = h("/nix/store/hjh2bm3gmkmqj07k21c858jg5k34h6mq-fod.drv");
    let rec_b = h("/nix/store/p5bpk2b9q8295ay940c10im15bm39264-fod.drv");
    assert_eq!(
        flat,
        "1f4919988b37c5fd5a1461b1f6619130a9f64ea420ad14b04d50300cc06330fd"
    );
    assert_eq!(
        rec,
        "576a9e23491e6c9f19db2c32a113e7950b1288682e034a790c3c72db7b735e5a"
    );
    assert_eq!(rec_b, rec);
}

#[test]
fn modulo_values_of_section_5_12() {
    let mut s = store();
    let (deferred2_path, deferred2) = deferred2();
    let (onimpure_path, onimpure) = onimpure();
    let mut cache = DrvHashCache::new();
    let cases: Vec<(Derivation, &str, DrvHashKind)> = vec![
        (
            load("multi", VECTORS[1].1),
            "98343fa836f425f75adc171d576f8fdb42bcc310e292c76e872b477509e78f7b",
            DrvHashKind::Regular,
        ),
        (
            load("sa", VECTORS[7].1),
            "3599bc96dc3b8c7d3aa78740559a771e9cc329c92bf611586aef25c88ee0474f",
            DrvHashKind::Regular,
        ),
        (
            load("ca", VECTORS[9].1),
            "0dbe832fcd4e90fb1a19da9975d7b25b238ca2abdd96bced4dbffe67697f17c6",
            DrvHashKind::Deferred,
        ),
        (
            load("caflat", VECTORS[10].1),
            "2e40e082df9c18cccd384e229f7e6a06789a3c90cf1e94d545bbb38750bc3c1e",
            DrvHashKind::Deferred,
        ),
        (
            load("deferred", VECTORS[11].1),
            "cb783852fba7374f6fe80fe1d27d37c5196df3c6b837420748e488d1a95c70b9",
            DrvHashKind::Deferred,
        ),
        (
            deferred2,
            "31c2f8c773bce4f0d6cadd84ece60dcf3b2436e03a71d3d7c75158e855ade9cf",
            DrvHashKind::Deferred,
        ),
        (
            load("impure", VECTORS[12].1),
            "ddffc26775f61118da8597d1f2f62c544ec92461b31b5b1075ed8689a7ee8292",
            DrvHashKind::Deferred,
        ),
        (
            onimpure,
            "d221808374249b47fd06bed1c1c9b3079ff12861f2642048a7752021aed8b0fc",
            DrvHashKind::Deferred,
        ),
    ];
    for (drv, expected, kind) in cases {
        let h = hash_derivation_modulo(&store_dir(), &drv, true, &mut cache, &mut |p| s.resolve(p))
            .unwrap();
        assert_eq!(h.kind, kind, "{}", drv.name);
        assert_eq!(h.hashes.len(), drv.outputs.len());
        for digest in h.hashes.values() {
            assert_eq!(hex(digest), expected, "{}", drv.name);
        }
    }
    assert_eq!(
        hex(&Hash::sha256("impure")),
        "ddffc26775f61118da8597d1f2f62c544ec92461b31b5b1075ed8689a7ee8292"
    );
    let _ = (deferred2_path, onimpure_path);
}

/// `deferred2` (a = deferred): only its `.drv` path and env `a` are recorded.
fn deferred2() -> (&'static str, Derivation) {
    let deferred = sp(VECTORS[11].1);
    let a = downstream_placeholder(&deferred, "out");
    assert_eq!(a, "/0xvh9cac9v2zp9s9pn2c7lgl7sb5ayjsmj581l3fmqd5ch1y4hfi");
    let mut drv = mk("deferred2", &[("a", &a)], DerivationOutput::Deferred);
    drv.input_drvs
        .insert(deferred, InputNode::from_outputs(["out"]));
    let drv = fill_in_output_paths(&store_dir(), drv, &mut DrvHashCache::new(), &mut |p| {
        store().resolve(p)
    })
    .unwrap();
    (
        "/nix/store/75pyg7pzpdpc8jwhaqzpwkbgcc94xdhb-deferred2.drv",
        drv,
    )
}

fn onimpure() -> (&'static str, Derivation) {
    let impure = sp(VECTORS[12].1);
    let a = downstream_placeholder(&impure, "out");
    assert_eq!(a, "/1jin0w508888dygb1rmf4c9hipvl31i27fg931xf0m8kd95k3n7p");
    let mut drv = mk("onimpure", &[("a", &a)], DerivationOutput::Deferred);
    drv.input_drvs
        .insert(impure, InputNode::from_outputs(["out"]));
    let drv = fill_in_output_paths(&store_dir(), drv, &mut DrvHashCache::new(), &mut |p| {
        store().resolve(p)
    })
    .unwrap();
    (
        "/nix/store/n5kwl57ry2kwyq0r4cyfz13fl6n76l0z-onimpure.drv",
        drv,
    )
}

#[test]
fn deferral_spreads_to_dependents() {
    for (path, drv) in [deferred2(), onimpure()] {
        assert_eq!(drv.outputs["out"], DerivationOutput::Deferred);
        assert_eq!(drv.env[b"out".as_slice()], "");
        assert_eq!(
            drv.derivation_type().unwrap(),
            DerivationType::DeferredInputAddressed
        );
        assert_eq!(
            store_dir().display(&drv.drv_path(&store_dir()).unwrap()),
            path
        );
    }
}

/// Blank every output path and output env var, as the evaluator starts, and check
/// that filling in gives the exact derivation Nix wrote.
#[test]
fn filling_in_blanked_outputs_recomputes_every_vector() {
    let mut s = store();
    let mut cache = DrvHashCache::new();
    for (file, path) in VECTORS {
        let original = load(file, path);
        let mut blank = original.clone();
        let ia = original.outputs.values().all(|o| {
            matches!(
                o,
                DerivationOutput::InputAddressed(_) | DerivationOutput::Deferred
            )
        });
        if ia {
            for (name, output) in blank.outputs.iter_mut() {
                *output = DerivationOutput::Deferred;
                blank.env.insert(name.as_str().into(), BString::default());
            }
        } else {
            for name in original.outputs.keys() {
                blank.env.remove(name.as_bytes());
            }
        }
        let filled = fill_in_output_paths(&store_dir(), blank, &mut cache, &mut |p| s.resolve(p))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(filled, original, "{file}");
        // Filling in a complete derivation checks it and changes nothing.
        let again = fill_in_output_paths(&store_dir(), original.clone(), &mut cache, &mut |p| {
            s.resolve(p)
        })
        .unwrap();
        assert_eq!(again, original, "{file}");
    }
}

#[test]
fn output_paths_of_input_addressed_vectors() {
    let expected = [
        (
            "simple",
            "out",
            "/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple",
        ),
        (
            "multi",
            "dev",
            "/nix/store/h21hqkmjfi6kmyqdn5lsl2vl4mij4x78-multi-dev",
        ),
        (
            "multi",
            "lib",
            "/nix/store/38zkcbgl3a69sk5dxg60iym23bli3yw4-multi-lib",
        ),
        (
            "multi",
            "out",
            "/nix/store/kycc2gnajibbp04nyc8vlwlf0ikxdayf-multi",
        ),
        (
            "dep",
            "out",
            "/nix/store/8l4ydrafilnn9yz2si7n1b7sy8ynyx1g-dep",
        ),
        (
            "depfod",
            "out",
            "/nix/store/j7pkd4gfd409xszsdrr1g5gpwf014336-depfod",
        ),
        (
            "withsrc",
            "out",
            "/nix/store/ngpzksp2f96y17mkri29320qls1f4dyw-withsrc",
        ),
        (
            "esc",
            "out",
            "/nix/store/xilznrx9g5xzlfa5d4a3r65jddja609a-esc",
        ),
        (
            "sa",
            "doc",
            "/nix/store/mi2gms3dqd6gvmnj3zdg3jmvf1k1704v-sa-doc",
        ),
        (
            "sa",
            "out",
            "/nix/store/702wrcjm18vrca8fn17jck0r9jmafm6r-sa",
        ),
        (
            "ph",
            "bin",
            "/nix/store/ldxs7liyyfh656n5h8ji51niny2czxbh-ph-bin",
        ),
        (
            "ph",
            "out",
            "/nix/store/ic5jr9dp1gg7mk6x3d29mwfwpf4q14di-ph",
        ),
    ];
    let mut s = store();
    let mut cache = DrvHashCache::new();
    for (file, output, path) in expected {
        let (_, drv_path) = VECTORS.iter().find(|(f, _)| *f == file).unwrap();
        let drv = load(file, drv_path);
        let h = hash_derivation_modulo(&store_dir(), &drv, true, &mut cache, &mut |p| s.resolve(p))
            .unwrap();
        let computed = kiln_derivation::output_paths::input_addressed_output_path(
            &store_dir(),
            &drv.name,
            output,
            &h.hashes[output],
        )
        .unwrap();
        assert_eq!(store_dir().display(&computed), path, "{file}^{output}");
        assert_eq!(
            drv.output_paths(&store_dir()).unwrap()[output],
            Some(sp(path))
        );
    }
}

#[test]
fn masking_the_inputs_too_gives_the_wrong_dep_path() {
    // Regression guard for §5.3.1: hashing inputs masked gives p2d7y4pp…-dep.
    let mut s = store();
    let mut cache = DrvHashCache::new();
    let dep = load("dep", VECTORS[2].1);
    let h = hash_derivation_modulo(&store_dir(), &dep, true, &mut cache, &mut |p| s.resolve(p))
        .unwrap();
    let path = store_dir()
        .make_output_path("out", &h.hashes["out"], "dep")
        .unwrap();
    assert!(path.base_name().starts_with("8l4ydraf"));
}

#[test]
fn placeholders_in_vectors() {
    let ph = load("ph", VECTORS[8].1);
    assert_eq!(
        ph.env[b"x".as_slice()],
        output_placeholder("out").as_bytes()
    );
    assert_eq!(
        ph.env[b"y".as_slice()],
        output_placeholder("bin").as_bytes()
    );
    assert_eq!(
        output_placeholder("out"),
        "/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9"
    );
    assert_eq!(
        output_placeholder("bin"),
        "/04f3da1kmbr67m3gzxikmsl4vjz5zf777sv6m14ahv22r65aac9m"
    );
    let ca = load("ca", VECTORS[9].1);
    assert_eq!(
        ca.env[b"dev".as_slice()],
        "/02qcpld1y6xhs5gz9bchpxaw0xdhmsp5dv88lh25r2ss44kh8dxz"
    );
    let deferred = load("deferred", VECTORS[11].1);
    let ca_path = sp(VECTORS[9].1);
    assert_eq!(
        deferred.env[b"a".as_slice()],
        downstream_placeholder(&ca_path, "dev").as_bytes()
    );
    assert_eq!(
        deferred.env[b"b".as_slice()],
        downstream_placeholder(&ca_path, "out").as_bytes()
    );
    assert_eq!(
        deferred.env[b"a".as_slice()],
        "/1lzfc6icnisv76gq2lmkdyk3y7rjs889qqp8wd16x7y99f5zh7dm"
    );
}

#[test]
fn output_kinds_are_classified() {
    let ca = load("ca", VECTORS[9].1);
    assert_eq!(
        ca.outputs["dev"],
        DerivationOutput::CAFloating {
            method: ContentAddressMethod::Recursive,
            algo: Algorithm::Sha256
        }
    );
    assert_eq!(
        ca.derivation_type().unwrap(),
        DerivationType::FloatingContentAddressed
    );
    let caflat = load("caflat", VECTORS[10].1);
    assert_eq!(
        caflat.outputs["out"],
        DerivationOutput::CAFloating {
            method: ContentAddressMethod::Flat,
            algo: Algorithm::Sha1
        }
    );
    let impure = load("impure", VECTORS[12].1);
    assert_eq!(
        impure.outputs["out"],
        DerivationOutput::Impure {
            method: ContentAddressMethod::Recursive,
            algo: Algorithm::Sha256
        }
    );
    assert_eq!(impure.derivation_type().unwrap(), DerivationType::Impure);
    assert_eq!(
        load("deferred", VECTORS[11].1).derivation_type().unwrap(),
        DerivationType::DeferredInputAddressed
    );
    assert_eq!(
        load("multi", VECTORS[1].1).derivation_type().unwrap(),
        DerivationType::InputAddressed
    );
    assert_eq!(
        load("fod-flat256", VECTORS[3].1).derivation_type().unwrap(),
        DerivationType::FixedOutput
    );
}

#[test]
fn esc_escapes_only_five_bytes_and_keeps_utf8_raw() {
    let esc = load("esc", VECTORS[6].1);
    let args: Vec<&[u8]> = esc.args.iter().map(|a| a.as_slice()).collect();
    assert_eq!(
        args,
        [
            b"a\"b".as_slice(),
            b"c\\d",
            b"e\nf",
            b"g\th",
            b"i\rj",
            b"k001l",
            "é€".as_bytes(),
            b"$"
        ]
    );
    let keys: Vec<&[u8]> = esc.env.keys().map(|k| k.as_slice()).collect();
    assert_eq!(
        keys,
        [
            b"".as_slice(),
            b"B",
            b"Zed",
            b"_u",
            b"a",
            b"a b",
            b"builder",
            b"name",
            b"out",
            b"system",
            b"x=y",
            "é".as_bytes()
        ]
    );
}

#[test]
fn ctl_rebuilt_from_attributes_matches_spec() {
    let v: &[u8] = b"a\x01b\x1fc\x7fd";
    let mut drv = mk("ctl", &[("w", "tab\there")], DerivationOutput::Deferred);
    drv.env.insert("v".into(), BString::from(v));
    let drv = fill_in_output_paths(
        &store_dir(),
        drv,
        &mut DrvHashCache::new(),
        &mut |_| unreachable!(),
    )
    .unwrap();
    assert_eq!(
        store_dir().display(&drv.drv_path(&store_dir()).unwrap()),
        "/nix/store/1d46mwb3yrx4h2sh4by091nji5y3v6pp-ctl.drv"
    );
    let text = drv.to_aterm(&store_dir()).unwrap();
    let entry: &[u8] = &[
        0x28, 0x22, 0x76, 0x22, 0x2c, 0x22, 0x61, 0x01, 0x62, 0x1f, 0x63, 0x7f, 0x64, 0x22, 0x29,
    ];
    assert!(text.windows(entry.len()).any(|w| w == entry));
    assert!(text.windows(17).any(|w| w == b"(\"w\",\"tab\\there\")"));
    // §6.3 fragment: control bytes as lowercase \u00xx, 0x7f raw, tab as \t.
    let path = drv.drv_path(&store_dir()).unwrap();
    let json = kiln_derivation::json::show_derivations(&store_dir(), [(&path, &drv)]).unwrap();
    let want_v: &[u8] = b"\"v\": \"a\\u0001b\\u001fc\x7fd\"";
    assert!(json.windows(want_v.len()).any(|w| w == want_v));
    let want_w: &[u8] = b"\"w\": \"tab\\there\"";
    assert!(json.windows(want_w.len()).any(|w| w == want_w));
}

#[test]
fn json_of_section_6_3_is_verbatim() {
    let (_, drv_path, drv) = fod_rows().swap_remove(3);
    let drv = fill_in_output_paths(
        &store_dir(),
        drv,
        &mut DrvHashCache::new(),
        &mut |_| unreachable!(),
    )
    .unwrap();
    let path = sp(drv_path);
    let json = kiln_derivation::json::show_derivations(&store_dir(), [(&path, &drv)]).unwrap();
    assert_eq!(
        BString::from(json.clone()),
        BString::from(data("fod-rec256.show.json"))
    );
    // And the reader takes the inner object back to the same derivation.
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let inner = &value[drv_path];
    let back = kiln_derivation::json::from_json_value(&store_dir(), inner, None).unwrap();
    assert_eq!(back, drv);
}

#[test]
fn json_fragments_for_ca_deferred_impure() {
    let mut entries = Vec::new();
    for file in ["ca", "deferred", "impure"] {
        let (_, path) = VECTORS.iter().find(|(f, _)| *f == file).unwrap();
        entries.push((sp(path), load(file, path)));
    }
    let json =
        kiln_derivation::json::show_derivations(&store_dir(), entries.iter().map(|(p, d)| (p, d)))
            .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let ca = &v[VECTORS[9].1];
    assert_eq!(
        ca["outputs"],
        serde_json::json!({"dev": {"hashAlgo": "r:sha256"}, "out": {"hashAlgo": "r:sha256"}})
    );
    let deferred = &v[VECTORS[11].1];
    assert_eq!(deferred["outputs"], serde_json::json!({"out": {}}));
    assert_eq!(
        deferred["inputDrvs"],
        serde_json::json!({VECTORS[9].1: ["dev", "out"]})
    );
    let impure = &v[VECTORS[12].1];
    assert_eq!(
        impure["outputs"]["out"],
        serde_json::json!({"hashAlgo": "r:sha256", "impure": true})
    );
    // Keys come sorted by path, and the deferred output is printed as `{}`.
    let text = String::from_utf8(json).unwrap();
    assert!(text.contains("\"out\": {}"));
    let pos = |p: &str| text.find(p).unwrap();
    assert!(pos(VECTORS[12].1) < pos(VECTORS[9].1) && pos(VECTORS[9].1) < pos(VECTORS[11].1));
}

#[test]
fn dynamic_derivation_vector_round_trips_and_uses_versioned_form() {
    let text = data("dyn.drv");
    let drv = Derivation::from_aterm(&store_dir(), &text, "dyn").unwrap();
    assert!(drv.has_dynamic_inputs());
    let node = &drv.input_drvs[&sp("/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-dep2.drv")];
    assert_eq!(node.outputs, ["cat".to_string(), "dog".to_string()].into());
    assert_eq!(
        node.dynamic_outputs["cat"],
        InputNode::from_outputs(["kitten"])
    );
    assert_eq!(
        node.dynamic_outputs["goose"],
        InputNode::from_outputs(["gosling"])
    );
    assert!(drv.outputs.is_empty());
    assert_eq!(drv.to_aterm(&store_dir()).unwrap(), text);

    // Without dynamic outputs the same derivation prints in the classic form.
    let mut plain = drv.clone();
    for node in plain.input_drvs.values_mut() {
        node.dynamic_outputs.clear();
    }
    let plain_text = plain.to_aterm(&store_dir()).unwrap();
    assert!(plain_text.starts_with(
        b"Derive([],[(\"/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-dep2.drv\",[\"cat\",\"dog\"])]"
    ));
    assert_eq!(
        Derivation::from_aterm(&store_dir(), &plain_text, "dyn").unwrap(),
        plain
    );

    // An input on an output of an output only, `([],[("out",["out"])])`.
    let mut nested = plain.clone();
    nested
        .input_drvs
        .values_mut()
        .next()
        .unwrap()
        .outputs
        .clear();
    nested
        .input_drvs
        .values_mut()
        .next()
        .unwrap()
        .dynamic_outputs = BTreeMap::from([("out".to_string(), InputNode::from_outputs(["out"]))]);
    let nested_text = nested.to_aterm(&store_dir()).unwrap();
    let want: &[u8] = b"([],[(\"out\",[\"out\"])])";
    assert!(nested_text.windows(want.len()).any(|w| w == want));
    assert_eq!(
        Derivation::from_aterm(&store_dir(), &nested_text, "dyn").unwrap(),
        nested
    );
}

#[test]
fn dynamic_inputs_make_the_derivation_deferred() {
    let mut drv = load("simple", VECTORS[0].1);
    drv.input_drvs.insert(
        sp("/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-dep2.drv"),
        InputNode {
            outputs: Default::default(),
            dynamic_outputs: BTreeMap::from([(
                "out".to_string(),
                InputNode::from_outputs(["out"]),
            )]),
        },
    );
    let h = hash_derivation_modulo(
        &store_dir(),
        &drv,
        true,
        &mut DrvHashCache::new(),
        &mut |p| panic!("a dynamic input must not be resolved, asked for {p}"),
    )
    .unwrap();
    assert_eq!(h.kind, DrvHashKind::Deferred);
    // The `.drv` path references the root of the chain.
    assert!(drv
        .references()
        .contains(&sp("/nix/store/c015dhfh5l0lp6wxyvdn7bmwhbbr6hr9-dep2.drv")));
}

#[test]
fn memoisation_resolves_each_shared_input_once() {
    let mut s = store();
    let mut cache = DrvHashCache::new();
    for (file, path) in [
        ("dep", VECTORS[2].1),
        ("depfod", VECTORS[4].1),
        ("sa", VECTORS[7].1),
    ] {
        let drv = load(file, path);
        hash_derivation_modulo(&store_dir(), &drv, true, &mut cache, &mut |p| s.resolve(p))
            .unwrap();
    }
    // simple (shared by dep and sa), multi, and depfod's three fixed inputs.
    assert_eq!(s.lookups, 5);
    assert_eq!(cache.len(), 5);
}

#[test]
fn derivation_output_id_format() {
    let mut s = store();
    let ca = load("ca", VECTORS[9].1);
    let h = hash_derivation_modulo(
        &store_dir(),
        &ca,
        true,
        &mut DrvHashCache::new(),
        &mut |p| s.resolve(p),
    )
    .unwrap();
    let id = DrvOutputId::new(h.hashes["dev"].clone(), "dev");
    let text = id.to_string();
    assert_eq!(
        text,
        "sha256:0dbe832fcd4e90fb1a19da9975d7b25b238ca2abdd96bced4dbffe67697f17c6!dev"
    );
    assert_eq!(text.parse::<DrvOutputId>().unwrap(), id);
    assert!("sha256:abc".parse::<DrvOutputId>().is_err());
    assert!("nonsense!out".parse::<DrvOutputId>().is_err());
}

#[test]
fn fixed_output_paths_of_hi_txt_table() {
    // formats.md §2.8 item 4, through the derivation-level helper (output `out`).
    let h = |algo| Hash::digest(algo, b"hi\n");
    let cases = [
        (
            ContentAddressMethod::Flat,
            Algorithm::Md5,
            "pvrdj3p4d70x1gq0i3qw3nlda57h84b0",
        ),
        (
            ContentAddressMethod::Flat,
            Algorithm::Sha1,
            "cwqi3hg14ghxp8cbkczibv2y439hdg7x",
        ),
        (
            ContentAddressMethod::Flat,
            Algorithm::Sha256,
            "a1qbm6bia1qj42ganmyz01knaai6d59p",
        ),
        (
            ContentAddressMethod::Flat,
            Algorithm::Sha512,
            "x38npfhps8vhqccp7cc8j51m6cf5xsrj",
        ),
    ];
    for (method, algo, hash_part) in cases {
        let p = fixed_output_path(&store_dir(), method, &h(algo), "hi.txt", "out").unwrap();
        assert_eq!(p.hash_part(), hash_part);
    }
}
