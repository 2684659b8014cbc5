//! `exportReferencesGraph` beyond the common case, against Nix 2.8: a path outside the
//! input closure is refused with Nix's message (both forms of the attribute), and the
//! graph of a `.drv` also holds the closures of that derivation's outputs.

mod common;

use common::*;

const EXPR: &str = r#"{ busybox }:
let
  bb = builtins.path { path = busybox; name = "busybox"; };
  mk = name: attrs: derivation ({
    inherit name; system = "x86_64-linux"; builder = "${bb}/sh";
  } // attrs);
  dep = mk "dep" { args = [ "-c" "echo dep > $out" ]; };
  hidden = builtins.unsafeDiscardStringContext "${dep}";
in {
  inherit dep;
  graphOfDrv = mk "graph-of-drv" {
    exportReferencesGraph = [ "g" dep.drvPath ];
    args = [ "-c" "cat g > $out" ];
  };
  outside = mk "outside" {
    exportReferencesGraph = [ "g" hidden ];
    args = [ "-c" "cat g > $out" ];
  };
  outsideStructured = mk "outside-structured" {
    __structuredAttrs = true;
    exportReferencesGraph.g = [ hidden ];
    builder = "${bb}/sh";
    args = [ "-c" "touch $out" ];
  };
}
"#;

#[test]
fn export_references_graph_matches_nix_beyond_the_input_closure() {
    let (tmp, busybox, kiln_store) = scratch();
    let nix_store = tmp.path().join("nix");
    let expr = tmp.path().join("export.nix");
    std::fs::write(&expr, EXPR).unwrap();
    let drv = |store: &std::path::Path, attr: &str| instantiate(store, &expr, &busybox, Some(attr));

    // The graph of a `.drv` needs its outputs built.
    nix_ok(
        "nix-store",
        &nix_realise_args(&nix_store, &[&drv(&nix_store, "dep")]),
    );
    kiln_ok(&[
        "--store",
        s(&kiln_store),
        "build",
        "--no-link",
        &drv(&kiln_store, "dep"),
    ]);
    let theirs = nix_ok(
        "nix-store",
        &nix_realise_args(&nix_store, &[&drv(&nix_store, "graphOfDrv")]),
    );
    let ours = kiln_ok(&[
        "--store",
        s(&kiln_store),
        "build",
        "--no-link",
        &drv(&kiln_store, "graphOfDrv"),
    ]);
    assert_eq!(ours.trim(), theirs.trim());
    let out = ours.trim().trim_start_matches('/');
    let graph = std::fs::read_to_string(kiln_store.join(out)).unwrap();
    assert_eq!(
        graph,
        std::fs::read_to_string(nix_store.join(out)).unwrap(),
        "the graph files differ"
    );
    let dep_out = nix_ok(
        "nix-store",
        &[
            "--store",
            s(&nix_store),
            "-q",
            "--outputs",
            &drv(&nix_store, "dep"),
        ],
    );
    assert!(
        graph.contains(&format!("{}\n", dep_out.trim())),
        "the graph of dep.drv holds dep's output:\n{graph}"
    );

    for attr in ["outside", "outsideStructured"] {
        let nix_drv = drv(&nix_store, attr);
        let out = nix("nix-store", &nix_realise_args(&nix_store, &[&nix_drv]));
        assert!(!out.status.success());
        let theirs = String::from_utf8_lossy(&out.stderr).to_string();
        let message = format!(
            "cannot export references of path '{}' because it is not in the input closure of the derivation",
            dep_out.trim()
        );
        assert!(theirs.contains(&message), "Nix said: {theirs}");
        let (ok, _, ours) = run_kiln(&[
            "--store",
            s(&kiln_store),
            "build",
            "--no-link",
            &drv(&kiln_store, attr),
        ]);
        assert!(!ok, "{attr} built");
        assert!(ours.contains(&message), "{attr}: kiln said: {ours}");
    }
    assert_store_verifies(&kiln_store);
}
