//! A kiln store is a Nix store: Nix accepts what kiln writes, and kiln reads what Nix
//! writes, with the same paths, hashes and metadata.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{make_tree_fixture, nix, nix_ok};
use kiln_hash::Algorithm;
use kiln_store::LocalStore;
use kiln_store_path::{FileIngestionMethod, StorePath};

fn root_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn fresh_store_has_nix_layout_and_nix_accepts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(tmp.path()).unwrap();
    let state = tmp.path().join("nix/var/nix");
    assert_eq!(std::fs::read(state.join("db/schema")).unwrap(), b"10");
    let header = std::fs::read(state.join("db/db.sqlite")).unwrap();
    assert_eq!(&header[18..20], &[2, 2], "database must be in WAL mode");
    for dir in ["gcroots", "profiles", "temproots", "db"] {
        assert!(state.join(dir).is_dir(), "{dir}");
    }
    assert!(tmp.path().join("nix/store/.links").is_dir());
    drop(store);

    // Nix opens it, adds to it, and kiln sees Nix's addition.
    let tree = tmp.path().join("src-tree");
    make_tree_fixture(&tree);
    let added = nix_ok(
        "nix-store",
        &["--store", root_str(tmp.path()), "--add", root_str(&tree)],
    );
    assert!(added.trim().ends_with("-src-tree"), "{added}");
    let store = LocalStore::open(tmp.path()).unwrap();
    let path = store.parse_path(added.trim()).unwrap();
    let info = store.query_path_info(&path).unwrap().expect("valid");
    assert_eq!(info.nar_size, 880);
}

#[test]
fn added_paths_equal_nix_store_add_and_add_fixed() {
    let tmp = tempfile::tempdir().unwrap();
    let kiln_root = tmp.path().join("kiln");
    let nix_root = tmp.path().join("nix");
    let tree = tmp.path().join("tree");
    make_tree_fixture(&tree);
    let file = tmp.path().join("hi.txt");
    std::fs::write(&file, "hi\n").unwrap();
    let store = LocalStore::open(&kiln_root).unwrap();

    let ours = store
        .add_path(
            &tree,
            "tree",
            FileIngestionMethod::Recursive,
            Algorithm::Sha256,
        )
        .unwrap();
    let theirs = nix_ok(
        "nix-store",
        &["--store", root_str(&nix_root), "--add", root_str(&tree)],
    );
    assert_eq!(store.store_dir().display(&ours.path), theirs.trim());

    for algo in Algorithm::ALL {
        for (method, flag) in [
            (FileIngestionMethod::Flat, None),
            (FileIngestionMethod::Recursive, Some("--recursive")),
        ] {
            let ours = store.add_path(&file, "hi.txt", method, algo).unwrap();
            let mut args = vec!["--store", root_str(&nix_root), "--add-fixed"];
            args.extend(flag);
            args.extend([algo.name(), root_str(&file)]);
            let theirs = nix_ok("nix-store", &args);
            assert_eq!(
                store.store_dir().display(&ours.path),
                theirs.trim(),
                "{method:?} {algo}"
            );
            // Same metadata as Nix records.
            let their_hash = nix_ok(
                "nix-store",
                &[
                    "--store",
                    root_str(&nix_root),
                    "-q",
                    "--hash",
                    theirs.trim(),
                ],
            );
            assert_eq!(ours.nar_hash.to_string(), their_hash.trim());
        }
    }
}

#[test]
fn nix_verifies_and_queries_a_store_kiln_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let tree = tmp.path().join("tree");
    make_tree_fixture(&tree);
    let store = LocalStore::open(&root).unwrap();
    let tree_info = store
        .add_path(
            &tree,
            "tree",
            FileIngestionMethod::Recursive,
            Algorithm::Sha256,
        )
        .unwrap();
    let text_refs: BTreeSet<StorePath> = [tree_info.path.clone()].into();
    let contents = format!("uses {}", store.store_dir().display(&tree_info.path));
    let text = store
        .add_text("uses-tree", contents.as_bytes(), &text_refs)
        .unwrap();
    // A derivation written by kiln, with an input source: a derivation with one input source.
    let drv_text = format!(
        "Derive([(\"out\",\"\",\"\",\"\")],[],[\"{}\"],\"x86_64-linux\",\"/bin/sh\",[],[(\"out\",\"\")])",
        store.store_dir().display(&text)
    );
    let drv = common::derivation_without_input_drvs(&store, drv_text.as_bytes(), "probe");
    let drv_path = store.add_derivation(&drv).unwrap();
    drop(store);

    let r = root_str(&root);
    let verify = nix("nix-store", &["--store", r, "--verify", "--check-contents"]);
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success(),
        "nix-store --verify failed: {stderr}"
    );
    assert!(
        !stderr.contains("error") && !stderr.contains("modified"),
        "{stderr}"
    );

    let store = LocalStore::open(&root).unwrap();
    for path in [&tree_info.path, &text, &drv_path] {
        let full = store.store_dir().display(path);
        let info = store.query_path_info(path).unwrap().unwrap();
        let hash = nix_ok("nix-store", &["--store", r, "-q", "--hash", &full]);
        assert_eq!(hash.trim(), info.nar_hash.to_string());
        let size = nix_ok("nix-store", &["--store", r, "-q", "--size", &full]);
        assert_eq!(size.trim(), info.nar_size.to_string());
        let refs: BTreeSet<String> =
            nix_ok("nix-store", &["--store", r, "-q", "--references", &full])
                .lines()
                .map(str::to_string)
                .collect();
        let ours: BTreeSet<String> = info
            .references
            .iter()
            .map(|p| store.store_dir().display(p))
            .collect();
        assert_eq!(refs, ours, "{full}");
        let deriver = nix_ok("nix-store", &["--store", r, "-q", "--deriver", &full]);
        assert_eq!(deriver.trim(), "unknown-deriver");
        let mut args = vec!["path-info", "--store", r, "--json"];
        if path.is_derivation() {
            args.push("--derivation");
        }
        args.push(&full);
        let json = nix_ok("nix", &args);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        let obj = &parsed[0];
        assert_eq!(obj["narHash"], info.nar_hash.to_sri());
        assert_eq!(obj["narSize"], info.nar_size);
        assert_eq!(obj["ca"], info.ca.as_ref().unwrap().to_string());
    }
    // Nix sees the derivation's output recorded, as it records its own.
    let outputs = nix_ok(
        "nix-store",
        &[
            "--store",
            r,
            "-q",
            "--outputs",
            &store.store_dir().display(&drv_path),
        ],
    );
    let recorded = store.query_derivation_outputs(&drv_path).unwrap();
    assert_eq!(outputs.trim(), store.store_dir().display(&recorded["out"]));
}

#[test]
fn kiln_reads_a_store_nix_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let expr = tmp.path().join("e.nix");
    std::fs::write(
        &expr,
        r#"let
  src = builtins.toFile "src.txt" "source text";
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "/bin/sh"; } // attrs);
  a = mk { name = "a"; inherit src; };
  b = mk { name = "b"; x = a; y = "${a}/bin"; };
in mk { name = "top"; deps = [ a b ]; inherit src; }
"#,
    )
    .unwrap();
    let r = root_str(&root);
    let drv = nix_ok("nix-instantiate", &["--store", r, root_str(&expr)]);
    let drv = drv.trim();
    let store = LocalStore::open(&root).unwrap();
    let drv_path = store.parse_path(drv).unwrap();
    let closure: BTreeSet<String> = store
        .query_closure([&drv_path])
        .unwrap()
        .iter()
        .map(|p| store.store_dir().display(p))
        .collect();
    let theirs: BTreeSet<String> = nix_ok("nix-store", &["--store", r, "-qR", drv])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(closure, theirs);
    // The same closure with each member's references, as Nix lists them.
    let graph = store.query_closure_graph([&drv_path]).unwrap();
    assert_eq!(
        graph
            .keys()
            .map(|p| store.store_dir().display(p))
            .collect::<BTreeSet<_>>(),
        theirs
    );
    for (member, refs) in &graph {
        let member = store.store_dir().display(member);
        let theirs: BTreeSet<String> =
            nix_ok("nix-store", &["--store", r, "-q", "--references", &member])
                .lines()
                .map(str::to_string)
                .collect();
        let ours: BTreeSet<String> = refs.iter().map(|p| store.store_dir().display(p)).collect();
        assert_eq!(ours, theirs, "references of {member}");
    }
    let json = nix_ok(
        "nix",
        &[
            "path-info",
            "--store",
            r,
            "--json",
            "--derivation",
            "-r",
            drv,
        ],
    );
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    for obj in parsed.as_array().unwrap() {
        let path = store.parse_path(obj["path"].as_str().unwrap()).unwrap();
        let info = store.query_path_info(&path).unwrap().unwrap();
        assert_eq!(obj["narHash"], info.nar_hash.to_sri());
        assert_eq!(obj["narSize"], info.nar_size);
    }
    let outputs = nix_ok("nix-store", &["--store", r, "-q", "--outputs", drv]);
    let ours = store.query_derivation_outputs(&drv_path).unwrap();
    assert_eq!(outputs.trim(), store.store_dir().display(&ours["out"]));
}
