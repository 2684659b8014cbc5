//! Output processing, reference scanning, checks, registration and stopping, with the builder
//! run in-process by [`InProcessSandbox`]: no root, no sandbox, no Nix.
//!
//! Expected hashes and paths come from Nix 2.8, computed once on files with the
//! contents the builders below write:
//! * `hello` is `hello\n`; `nix-hash --type sha256 --flat --base32 hello` =
//!   `00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq`, hex
//!   `5891b5b5…f6be03`, SRI (`nix hash to-sri`) `sha256-WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM=`;
//!   `nix-store --add-fixed sha256 hello` = `/nix/store/8zv8i345w2xn27jrxj4cyjc6x3b4am1q-hello`.
//! * `tree` is `README` (`hello\n`, 0644), `link -> README`, `sub/run` (`#!/bin/sh\n`,
//!   0755); `nix-hash --type sha256 tree` = `bb4c3bee…8f0c74`, base32
//!   `0x0cizc9zx7ncqfypr1ycx6av16r64wh8xhx1qrgf1qbrvp3nk5v`, SRI
//!   `sha256-u0w77s4LB/cyDh12BDkx2YStTGc+5OsdZvb0n9iPDHQ=`;
//!   `nix-store --add-fixed --recursive sha256 tree` =
//!   `/nix/store/xdmzwxnh3n9jn4n40irx9xgmgmhq7ifb-tree`.
//!
//! Error messages are Nix 2.8's (`libstore/build/local-derivation-goal.cc`).

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use kiln_build::{
    realise, BuildSettings, BuilderCall, Error, InProcessSandbox, Job, Realised, Resources, Stop,
};
use kiln_derivation::Derivation;
use kiln_scheduler::CancelToken;
use kiln_store::LocalStore;
use kiln_store_path::StorePath;

const HELLO_SRI: &str = "sha256-WJG1tSLV3whtD/CxEPvZ0hu0/HFjrzTQgoai6Eb2vgM=";
const HELLO_HEX: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
const HELLO_FIXED_PATH: &str = "/nix/store/8zv8i345w2xn27jrxj4cyjc6x3b4am1q-hello";
const TREE_SRI: &str = "sha256-u0w77s4LB/cyDh12BDkx2YStTGc+5OsdZvb0n9iPDHQ=";
const TREE_HEX: &str = "bb4c3beece0b07f7320e1d76043931d984ad4c673ee4eb1d66f6f49fd88f0c74";
const TREE_FIXED_PATH: &str = "/nix/store/xdmzwxnh3n9jn4n40irx9xgmgmhq7ifb-tree";

struct Fixture {
    tmp: tempfile::TempDir,
    store: LocalStore,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&tmp.path().join("root")).unwrap();
    std::fs::create_dir(tmp.path().join("build")).unwrap();
    Fixture { tmp, store }
}

impl Fixture {
    fn settings(
        &self,
        builder: impl Fn(&mut BuilderCall<'_>) -> i32 + Send + Sync + 'static,
    ) -> BuildSettings {
        let mut settings = BuildSettings::with_sandbox(Arc::new(InProcessSandbox::new(builder)));
        settings.tmp_dir = self.tmp.path().join("build");
        settings.global_state_dir = self.tmp.path().join("state");
        settings.sync_before_registering = false;
        settings
    }

    /// A derivation `name` with `outputs` (name, hash algorithm, hash), `inputs` as
    /// input sources and `env` beside the usual variables, written to the store. A
    /// fixed output's path is Nix's (`fixed_path`), checked on the way.
    fn derivation(
        &self,
        name: &str,
        outputs: &[(&str, &str, &str)],
        inputs: &[&StorePath],
        env: &[(&str, &str)],
    ) -> (StorePath, Derivation) {
        let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let outs: Vec<String> = outputs
            .iter()
            .map(|(o, algo, hash)| {
                let path = if hash.is_empty() {
                    ""
                } else {
                    fixed_path(name, hash)
                };
                format!(
                    "({},{},{},{})",
                    quote(o),
                    quote(path),
                    quote(algo),
                    quote(hash)
                )
            })
            .collect();
        let srcs: Vec<String> = inputs
            .iter()
            .map(|p| quote(&self.store.layout().display(p)))
            .collect();
        let mut vars: Vec<(String, String)> = vec![
            ("builder".into(), "/bin/sh".into()),
            ("name".into(), name.into()),
            ("system".into(), "x86_64-linux".into()),
        ];
        vars.extend(outputs.iter().map(|(o, _, hash)| {
            let path = if hash.is_empty() {
                ""
            } else {
                fixed_path(name, hash)
            };
            (o.to_string(), path.to_string())
        }));
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        vars.sort();
        let vars: Vec<String> = vars
            .iter()
            .map(|(k, v)| format!("({},{})", quote(k), quote(v)))
            .collect();
        let text = format!(
            "Derive([{}],[],[{}],\"x86_64-linux\",\"/bin/sh\",[],[{}])",
            outs.join(","),
            srcs.join(","),
            vars.join(",")
        );
        let drv = Derivation::from_aterm(self.store.store_dir(), text.as_bytes(), name).unwrap();
        let drv = kiln_derivation::fill_in_output_paths(
            self.store.store_dir(),
            drv,
            &mut kiln_derivation::DrvHashCache::new(),
            &mut |p| panic!("no input derivations, yet asked for {p}"),
        )
        .unwrap();
        let path = self.store.add_derivation(&drv).unwrap();
        (path, drv)
    }

    /// Realises `drv`, then waits for every background removal.
    fn build(
        &self,
        settings: &BuildSettings,
        drv: &(StorePath, Derivation),
        stop: Stop,
    ) -> Result<Realised, Error> {
        let resources = Arc::new(Resources::new());
        let job = Job { echo: None, stop };
        let result = realise(
            &self.store,
            settings,
            &resources,
            &drv.0,
            &drv.1,
            &Default::default(),
            job,
        );
        drop(resources);
        result
    }

    fn output(&self, drv: &(StorePath, Derivation), name: &str) -> StorePath {
        drv.1
            .output_paths(self.store.store_dir())
            .unwrap()
            .into_iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, p)| p)
            .unwrap()
    }

    fn text(&self, name: &str, contents: &str) -> StorePath {
        self.store
            .add_text(name, contents.as_bytes(), &BTreeSet::new())
            .unwrap()
    }

    /// Nothing of a failed build remains: no output, no chroot, no build directory,
    /// nothing registered.
    fn assert_nothing_left(&self, drv: &(StorePath, Derivation)) {
        for name in drv.1.outputs.keys() {
            let out = self.output(drv, name);
            assert!(!self.store.is_valid(&out).unwrap(), "{out} registered");
            assert!(
                std::fs::symlink_metadata(self.store.layout().real_path(&out)).is_err(),
                "{out} left in the store"
            );
        }
        let store_dir = self.store.layout().real_store_dir.clone();
        let chroots: Vec<_> = std::fs::read_dir(&store_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".chroot") || n.contains("kiln-chroot-trash"))
            .collect();
        assert!(chroots.is_empty(), "{chroots:?}");
        let dirs: Vec<_> = std::fs::read_dir(self.tmp.path().join("build"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(dirs.is_empty(), "build directories left: {dirs:?}");
    }
}

/// Nix's path of the fixed outputs below; those of the all-zero hash are
/// `nix-store --print-fixed-path [--recursive] sha256 000…000 NAME`.
fn fixed_path(name: &str, hash: &str) -> &'static str {
    match (name, hash == "0".repeat(64)) {
        ("hello", false) => HELLO_FIXED_PATH,
        ("tree", false) => TREE_FIXED_PATH,
        ("hello", true) => "/nix/store/74vpmc7rj37qfw5j1hkkv535b13pr2bl-hello",
        ("tree", true) => "/nix/store/sk9vn2l2nly168zgd77qvxpb8giw9md6-tree",
        _ => panic!("no fixed path for {name}"),
    }
}

fn write(path: &Path, contents: &str, mode: u32) {
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The `tree` of the module comment, at `dir`, with modes a builder might leave.
fn write_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    write(&dir.join("README"), "hello\n", 0o644);
    write(&dir.join("sub/run"), "#!/bin/sh\n", 0o755);
    std::os::unix::fs::symlink("README", dir.join("link")).unwrap();
}

fn built(
    result: Result<Realised, Error>,
) -> std::collections::BTreeMap<String, kiln_store::PathInfo> {
    match result {
        Ok(Realised::Built(infos)) => infos,
        other => panic!("expected a build, got {other:?}"),
    }
}

fn error(result: Result<Realised, Error>) -> Error {
    match result {
        Err(e) => e,
        Ok(r) => panic!("expected an error, got {r:?}"),
    }
}

#[test]
fn references_to_inputs_and_self_are_found_others_are_not() {
    let f = fixture();
    let input = f.text("input", "data");
    let unrelated = f.text("unrelated", "other");
    let input_str = f.store.layout().display(&input);
    let unrelated_str = f.store.layout().display(&unrelated);
    let drv = f.derivation("refs", &[("out", "", "")], &[&input], &[]);
    let settings = f.settings(move |b| {
        let out = b.env["out"].clone();
        let text = format!("{out}\n{input_str}\n{unrelated_str}\n");
        write(&b.output("out"), &text, 0o644);
        0
    });
    let infos = built(f.build(&settings, &drv, Stop::default()));
    let out = f.output(&drv, "out");
    // The unrelated path is valid and named, but not an input: not a reference.
    let expected: BTreeSet<StorePath> = [input.clone(), out.clone()].into();
    assert_eq!(infos["out"].references, expected);
    let registered = f.store.query_path_info(&out).unwrap().unwrap();
    assert_eq!(registered.references, expected);
    assert_eq!(registered.deriver.as_ref(), Some(&drv.0));
}

#[test]
fn outputs_are_canonicalised_and_hashed_as_nix_hashes_them() {
    let f = fixture();
    let drv = f.derivation("tree", &[("out", "", "")], &[], &[]);
    let settings = f.settings(|b| {
        write_tree(&b.output("out"));
        0
    });
    let infos = built(f.build(&settings, &drv, Stop::default()));
    assert_eq!(infos["out"].nar_hash.to_sri(), TREE_SRI);
    let real = f.store.layout().real_path(&f.output(&drv, "out"));
    for (rel, mode) in [
        ("", 0o555),
        ("sub", 0o555),
        ("sub/run", 0o555),
        ("README", 0o444),
    ] {
        let meta = std::fs::symlink_metadata(real.join(rel)).unwrap();
        assert_eq!(meta.mode() & 0o7777, mode, "mode of '{rel}'");
        assert_eq!(meta.mtime(), 1, "mtime of '{rel}'");
    }
    let link = std::fs::symlink_metadata(real.join("link")).unwrap();
    assert_eq!(link.mtime(), 1);
    assert_eq!(
        std::fs::read_link(real.join("link")).unwrap(),
        Path::new("README")
    );
}

#[test]
fn missing_output_fails_with_nix_message_and_leaves_nothing() {
    let f = fixture();
    let drv = f.derivation("lazy", &[("out", "", "")], &[], &[]);
    let settings = f.settings(|_| 0);
    let err = error(f.build(&settings, &drv, Stop::default()));
    let out = f.store.layout().display(&f.output(&drv, "out"));
    let drv_str = f.store.layout().display(&drv.0);
    assert_eq!(
        err.to_string(),
        format!(
            "builder for '{drv_str}' failed to produce output path for output 'out' at '{out}'"
        )
    );
    f.assert_nothing_left(&drv);
}

#[test]
fn flat_fixed_output_with_the_right_hash_is_registered_content_addressed() {
    let f = fixture();
    let drv = f.derivation("hello", &[("out", "sha256", HELLO_HEX)], &[], &[]);
    assert_eq!(
        f.store.layout().display(&f.output(&drv, "out")),
        HELLO_FIXED_PATH
    );
    let settings = f.settings(|b| {
        write(&b.output("out"), "hello\n", 0o644);
        0
    });
    let infos = built(f.build(&settings, &drv, Stop::default()));
    assert_eq!(
        infos["out"].ca.as_ref().unwrap().to_string(),
        "fixed:sha256:00xyyr3fi8l6hb839bv3f7yb86yjv7xi1cgh1xnhipym4asvb4aq"
    );
    assert!(f.store.is_valid(&f.output(&drv, "out")).unwrap());
}

#[test]
fn recursive_fixed_output_with_the_right_hash_is_registered_content_addressed() {
    let f = fixture();
    let drv = f.derivation("tree", &[("out", "r:sha256", TREE_HEX)], &[], &[]);
    assert_eq!(
        f.store.layout().display(&f.output(&drv, "out")),
        TREE_FIXED_PATH
    );
    let settings = f.settings(|b| {
        write_tree(&b.output("out"));
        0
    });
    let infos = built(f.build(&settings, &drv, Stop::default()));
    assert_eq!(
        infos["out"].ca.as_ref().unwrap().to_string(),
        "fixed:r:sha256:0x0cizc9zx7ncqfypr1ycx6av16r64wh8xhx1qrgf1qbrvp3nk5v"
    );
    assert_eq!(infos["out"].nar_hash.to_sri(), TREE_SRI);
}

#[test]
fn flat_fixed_output_with_a_wrong_hash_fails_with_nix_message() {
    let f = fixture();
    let zeros = "0".repeat(64);
    let drv = f.derivation("hello", &[("out", "sha256", &zeros)], &[], &[]);
    let settings = f.settings(|b| {
        write(&b.output("out"), "hello\n", 0o644);
        0
    });
    let err = error(f.build(&settings, &drv, Stop::default()));
    let drv_str = f.store.layout().display(&drv.0);
    assert_eq!(
        err.to_string(),
        format!(
            "hash mismatch in fixed-output derivation '{drv_str}':\n  specified: \
             sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n     got:    {HELLO_SRI}"
        )
    );
    let declared = f.output(&drv, "out");
    assert!(!f.store.is_valid(&declared).unwrap());
    // As in Nix, what was produced is kept under its own content-addressed path.
    let actual = f.store.parse_path(HELLO_FIXED_PATH).unwrap();
    assert!(f.store.is_valid(&actual).unwrap());
}

#[test]
fn recursive_fixed_output_with_a_wrong_hash_fails_with_nix_message() {
    let f = fixture();
    let zeros = "0".repeat(64);
    let drv = f.derivation("tree", &[("out", "r:sha256", &zeros)], &[], &[]);
    let settings = f.settings(|b| {
        write_tree(&b.output("out"));
        0
    });
    let err = error(f.build(&settings, &drv, Stop::default()));
    assert!(
        err.to_string().ends_with(&format!(
            "specified: sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n     got:    {TREE_SRI}"
        )),
        "{err}"
    );
    assert!(!f.store.is_valid(&f.output(&drv, "out")).unwrap());
}

/// Builds `name`, whose output refers to an input, with `attr` set to what `value`
/// makes of that input's path: the build must fail with Nix's message and leave
/// nothing.
fn assert_reference_refused(name: &str, attr: &str, value: impl Fn(&str) -> String) {
    let f = fixture();
    let input = f.text("input", "data");
    let input_str = f.store.layout().display(&input);
    let drv = f.derivation(
        name,
        &[("out", "", "")],
        &[&input],
        &[(attr, &value(&input_str))],
    );
    let text = input_str.clone();
    let settings = f.settings(move |b| {
        write(&b.output("out"), &text, 0o644);
        0
    });
    let err = error(f.build(&settings, &drv, Stop::default()));
    let out = f.store.layout().display(&f.output(&drv, "out"));
    assert_eq!(
        err.to_string(),
        format!("output '{out}' is not allowed to refer to the following paths:\n  {input_str}")
    );
    f.assert_nothing_left(&drv);
}

#[test]
fn allowed_references_reject_a_reference_not_listed() {
    assert_reference_refused("strict", "allowedReferences", |_| String::new());
}

#[test]
fn allowed_references_accept_listed_references() {
    let f = fixture();
    let input = f.text("input", "data");
    let input_str = f.store.layout().display(&input);
    let drv = f.derivation(
        "listed",
        &[("out", "", "")],
        &[&input],
        &[("allowedReferences", &input_str)],
    );
    let settings = f.settings(move |b| {
        write(&b.output("out"), &input_str, 0o644);
        0
    });
    let infos = built(f.build(&settings, &drv, Stop::default()));
    assert_eq!(infos["out"].references, [input].into());
}

#[test]
fn disallowed_references_reject_a_listed_reference() {
    assert_reference_refused("forbidden", "disallowedReferences", str::to_string);
}

#[test]
fn structured_output_checks_apply_to_their_output_only() {
    let f = fixture();
    let input = f.text("input", "data");
    let input_str = f.store.layout().display(&input);
    let json = format!(
        r#"{{"outputChecks":{{"dev":{{"disallowedReferences":["{input_str}"]}}}},"outputs":["out","dev"]}}"#
    );
    let drv = f.derivation(
        "checked",
        &[("dev", "", ""), ("out", "", "")],
        &[&input],
        &[("__json", &json)],
    );
    let text = input_str.clone();
    // Structured attributes pass the output paths in `.attrs.json`, not the env.
    let (out, dev) = (
        f.store.layout().display(&f.output(&drv, "out")),
        f.store.layout().display(&f.output(&drv, "dev")),
    );
    let settings = f.settings(move |b| {
        // `out` may refer to the input; `dev` may not.
        write(&b.host_path(&out), &text, 0o644);
        write(&b.host_path(&dev), &text, 0o644);
        0
    });
    let err = error(f.build(&settings, &drv, Stop::default()));
    let dev = f.store.layout().display(&f.output(&drv, "dev"));
    assert_eq!(
        err.to_string(),
        format!("output '{dev}' is not allowed to refer to the following paths:\n  {input_str}")
    );
    f.assert_nothing_left(&drv);
}

#[test]
fn outputs_referring_to_each_other_are_a_cycle() {
    let f = fixture();
    let drv = f.derivation("cyclic", &[("dev", "", ""), ("out", "", "")], &[], &[]);
    let settings = f.settings(|b| {
        let (out, dev) = (b.env["out"].clone(), b.env["dev"].clone());
        write(&b.output("out"), &dev, 0o644);
        write(&b.output("dev"), &out, 0o644);
        0
    });
    let err = error(f.build(&settings, &drv, Stop::default()));
    assert!(matches!(err, Error::OutputCycle { .. }), "{err}");
    let drv_str = f.store.layout().display(&drv.0);
    assert!(
        err.to_string().starts_with(&format!(
            "cycle detected in build of '{drv_str}' in the references of output '"
        )),
        "{err}"
    );
    f.assert_nothing_left(&drv);
}

#[test]
fn an_output_writable_by_others_is_suspicious() {
    let f = fixture();
    let drv = f.derivation("open", &[("out", "", "")], &[], &[]);
    let settings = f.settings(|b| {
        write(&b.output("out"), "x", 0o666);
        0
    });
    let err = error(f.build(&settings, &drv, Stop::default()));
    let out = f.store.layout().display(&f.output(&drv, "out"));
    assert_eq!(
        err.to_string(),
        format!("suspicious ownership or permission on '{out}' for output 'out'; rejecting this build output")
    );
    f.assert_nothing_left(&drv);
}

#[test]
fn a_failed_builder_registers_nothing_and_leaves_nothing() {
    let f = fixture();
    let drv = f.derivation("failing", &[("out", "", "")], &[], &[]);
    let settings = f.settings(|b| {
        write(&b.output("out"), "half", 0o644);
        writeln!(b.log, "going down").unwrap();
        1
    });
    let err = error(f.build(&settings, &drv, Stop::default()));
    let drv_str = f.store.layout().display(&drv.0);
    assert!(
        err.to_string()
            .starts_with(&format!("builder for '{drv_str}' failed with exit code 1")),
        "{err}"
    );
    assert!(err.to_string().contains("going down"), "{err}");
    f.assert_nothing_left(&drv);
}

#[test]
fn a_build_stopped_while_running_registers_nothing_and_leaves_nothing() {
    let f = fixture();
    let drv = f.derivation("stopped", &[("out", "", "")], &[], &[]);
    let run = CancelToken::new();
    let cancel = run.clone();
    let settings = f.settings(move |b| {
        write(&b.output("out"), "complete", 0o644);
        // The scheduler gives up on the run while the builder runs (a sibling
        // failed); the builder is then killed, whatever it had written.
        cancel.cancel();
        assert!(b.stop.is_set());
        0
    });
    let err = error(f.build(&settings, &drv, Stop::new(run, CancelToken::new())));
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
    f.assert_nothing_left(&drv);
}

#[test]
fn an_interrupted_run_starts_no_builder() {
    let f = fixture();
    let drv = f.derivation("never", &[("out", "", "")], &[], &[]);
    let settings = f.settings(|_| panic!("the builder must not run"));
    let interrupt = CancelToken::new();
    interrupt.cancel();
    let err = error(f.build(&settings, &drv, Stop::new(CancelToken::new(), interrupt)));
    assert!(matches!(err, Error::Interrupted), "{err}");
    f.assert_nothing_left(&drv);
}

#[test]
fn a_kept_failed_build_directory_is_reported_not_printed() {
    let f = fixture();
    let drv = f.derivation("kept", &[("out", "", "")], &[], &[]);
    let mut settings = f.settings(|b| {
        write(&b.build_dir.join("evidence"), "x", 0o644);
        1
    });
    settings.keep_failed = true;
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = Arc::clone(&kept);
    settings.on_keep_failed = Some(Arc::new(move |dir: &Path| {
        sink.lock().unwrap().push(dir.to_path_buf())
    }));
    error(f.build(&settings, &drv, Stop::default()));
    let kept = kept.lock().unwrap().clone();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].join("evidence").exists(), "{kept:?}");
}

// Through the scheduler and the executor, as `kiln build` runs builds.

/// Before, a failure without keep-going left the executor's other running builds to
/// run to their end and register their outputs; the scheduler's cancellation never
/// reached them.
#[test]
fn a_failure_stops_the_executors_other_running_build() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let f = fixture();
    let slow = f.derivation("slow", &[("out", "", "")], &[], &[]);
    let bad = f.derivation("bad", &[("out", "", "")], &[], &[]);
    let slow_started = Arc::new(AtomicBool::new(false));
    let saw_stop = Arc::new(AtomicBool::new(false));
    let (started, stopped) = (Arc::clone(&slow_started), Arc::clone(&saw_stop));
    let settings = f.settings(move |b| {
        if b.env["name"] == "bad" {
            while !started.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            return 1;
        }
        write(&b.output("out"), "slow", 0o644);
        started.store(true, Ordering::SeqCst);
        // Bounded, so that a stop that never comes fails the test below rather
        // than hanging it.
        for _ in 0..6000 {
            if b.stop.is_set() {
                stopped.store(true, Ordering::SeqCst);
                return 137;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        0
    });
    let executor = kiln_build::DerivationExecutor::new(&f.store, settings);
    let scheduler = kiln_scheduler::Scheduler::new(
        executor,
        kiln_scheduler::Options {
            jobs: std::num::NonZeroUsize::new(2).unwrap(),
            keep_going: false,
        },
    );
    let goals = [&bad, &slow].map(|d| kiln_build::Goal::Derivation(d.0.clone()));
    let report = scheduler.run(goals, &mut |_: kiln_scheduler::Event<'_, _, _, _>| {});
    drop(scheduler);
    assert_eq!(report.failed().count(), 2);
    assert!(
        saw_stop.load(Ordering::SeqCst),
        "the slow builder was never stopped"
    );
    f.assert_nothing_left(&slow);
    f.assert_nothing_left(&bad);
}

/// Dropping the executor is all a caller does: the background removals are waited
/// for and spare build directories deleted (before, a separate
/// `finish_background_cleanup()` had to come after it, or they were left behind).
#[test]
fn dropping_the_executor_leaves_no_build_directory() {
    let f = fixture();
    let drv = f.derivation("fine", &[("out", "", "")], &[], &[]);
    let settings = f.settings(|b| {
        write(&b.build_dir.join("scratch"), "x", 0o644);
        write(&b.output("out"), "fine", 0o644);
        0
    });
    let executor = kiln_build::DerivationExecutor::new(&f.store, settings);
    let scheduler = kiln_scheduler::Scheduler::new(executor, Default::default());
    let goal = kiln_build::Goal::Derivation(drv.0.clone());
    let report = scheduler.run([goal], &mut |_: kiln_scheduler::Event<'_, _, _, _>| {});
    assert_eq!(report.failed().count(), 0);
    drop(scheduler);
    assert!(f.store.is_valid(&f.output(&drv, "out")).unwrap());
    let left: Vec<_> = std::fs::read_dir(f.tmp.path().join("build"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
