//! Installable syntax: `drv^out`, `drv^out,dev`, `drv^*`, `drv^out^out`.

mod common;

use std::collections::BTreeSet;

use common::{sp, store_dir};
use kiln_derivation::{DerivedPath, Error, OutputsSpec, SingleDerivedPath};

const FOO: &str = "/nix/store/g1w7hy3qg1w7hy3qg1w7hy3qg1w7hy3q-foo.drv";

fn names(ns: &[&str]) -> OutputsSpec {
    OutputsSpec::Names(ns.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>())
}

fn opaque() -> SingleDerivedPath {
    SingleDerivedPath::Opaque(sp(FOO))
}

#[test]
fn parses_each_form() {
    let sd = store_dir();
    assert_eq!(
        DerivedPath::parse(&sd, FOO).unwrap(),
        DerivedPath::Opaque(sp(FOO))
    );
    assert_eq!(
        DerivedPath::parse(&sd, &format!("{FOO}^out")).unwrap(),
        DerivedPath::Built {
            drv_path: opaque(),
            outputs: names(&["out"])
        }
    );
    assert_eq!(
        DerivedPath::parse(&sd, &format!("{FOO}^out,dev")).unwrap(),
        DerivedPath::Built {
            drv_path: opaque(),
            outputs: names(&["dev", "out"])
        }
    );
    assert_eq!(
        DerivedPath::parse(&sd, &format!("{FOO}^*")).unwrap(),
        DerivedPath::Built {
            drv_path: opaque(),
            outputs: OutputsSpec::All
        }
    );
    // As Nix parses it: split at the last `^`.
    let nested = DerivedPath::parse(&sd, &format!("{FOO}^out^bin,dev")).unwrap();
    assert_eq!(
        nested,
        DerivedPath::Built {
            drv_path: SingleDerivedPath::Built {
                drv_path: Box::new(opaque()),
                output: "out".into()
            },
            outputs: names(&["bin", "dev"]),
        }
    );
    assert!(nested.is_dynamic());
    assert!(!DerivedPath::parse(&sd, &format!("{FOO}^out"))
        .unwrap()
        .is_dynamic());
}

#[test]
fn prints_canonically() {
    let sd = store_dir();
    for (input, printed) in [
        (FOO.to_string(), FOO.to_string()),
        (format!("{FOO}^out"), format!("{FOO}^out")),
        (format!("{FOO}^out,dev"), format!("{FOO}^dev,out")),
        (format!("{FOO}^dev,out,dev"), format!("{FOO}^dev,out")),
        (format!("{FOO}^*"), format!("{FOO}^*")),
        (format!("{FOO}^out^out"), format!("{FOO}^out^out")),
        (format!("{FOO}^a^b^c,d"), format!("{FOO}^a^b^c,d")),
    ] {
        let p = DerivedPath::parse(&sd, &input).unwrap();
        assert_eq!(p.to_string(&sd), printed);
        assert_eq!(DerivedPath::parse(&sd, &printed).unwrap(), p);
    }
}

#[test]
fn single_derived_paths() {
    let sd = store_dir();
    let p = SingleDerivedPath::parse(&sd, &format!("{FOO}^out^bin")).unwrap();
    assert_eq!(p.depth(), 2);
    assert_eq!(p.root(), &sp(FOO));
    assert_eq!(p.to_string(&sd), format!("{FOO}^out^bin"));
    assert_eq!(
        DerivedPath::from(p),
        DerivedPath::parse(&sd, &format!("{FOO}^out^bin")).unwrap()
    );
    assert!(SingleDerivedPath::parse(&sd, &format!("{FOO}^out,dev")).is_err());
    assert!(SingleDerivedPath::parse(&sd, &format!("{FOO}^*")).is_err());
}

#[test]
fn errors_explain_the_problem() {
    let sd = store_dir();
    let cases = [
        (format!("{FOO}^"), "empty output name"),
        (format!("{FOO}^out,,dev"), "empty output name"),
        (format!("{FOO}^*,out"), "'*' can only stand alone"),
        (format!("{FOO}^*^out"), "'*' can only stand alone"),
        (format!("{FOO}^o ut"), "invalid character ' '"),
        (
            "/nix/store/i5xvchlm36jash0k9ndh3vya563ls965-simple^out".to_string(),
            "is not a derivation",
        ),
        ("/tmp/foo.drv^out".to_string(), "not in the Nix store"),
        ("^out".to_string(), "not in the Nix store"),
    ];
    for (input, want) in cases {
        match DerivedPath::parse(&sd, &input).unwrap_err() {
            e @ Error::DerivedPath { .. } => {
                let msg = e.to_string();
                assert!(msg.contains(want) && msg.contains(&input), "{input}: {msg}");
            }
            other => panic!("{input}: {other:?}"),
        }
    }
}

#[test]
fn absurd_nesting_is_refused_not_a_stack_overflow() {
    let s = format!("{FOO}{}", "^out".repeat(100_000));
    assert!(DerivedPath::parse(&store_dir(), &s).is_err());
    let ok = format!("{FOO}{}", "^out".repeat(100));
    assert_eq!(
        DerivedPath::parse(&store_dir(), &ok)
            .unwrap()
            .to_string(&store_dir()),
        ok
    );
}
