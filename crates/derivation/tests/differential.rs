//! Differential test against the real Nix 2.8: instantiate a spread of derivations
//! into a scratch store with `nix-instantiate --store DIR`, then for every `.drv` in
//! that store (dependencies included) check that kiln
//!
//! 1. parses it and prints the same bytes back,
//! 2. recomputes its `.drv` path,
//! 3. recomputes its output paths and output env vars from a blanked copy (the
//!    evaluator's procedure), resolving inputs from the scratch store, and
//! 4. prints the same `nix show-derivation` JSON, compared byte for byte and as
//!    parsed values.
//!
//! Needs Nix 2.8 on PATH; without it the test fails (run scripts/test.sh).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bstr::BString;
use kiln_derivation::{fill_in_output_paths, Derivation, DerivationOutput, DrvHashCache, Error};
use kiln_hash::{Algorithm, Hash};
use kiln_store_path::{StoreDir, StorePath};

const FEATURES: &str = "nix-command ca-derivations impure-derivations";

/// The hand-written part of the expression. `#GENERATED#` is replaced by attributes
/// built in Rust (the fixed-output matrix and a maximal-length name).
const EXPR: &str = r#"
let
  mk = attrs: derivation ({ system = "x86_64-linux"; builder = "/bin/sh"; } // attrs);
  caf = attrs: mk ({ __contentAddressed = true; } // attrs);
  abc256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
in rec {
  # formats.md Appendix A
  simple = mk { name = "simple"; args = [ "-c" "echo hi > $out" ]; };
  multi = mk { name = "multi"; outputs = [ "out" "dev" "lib" ]; args = [ "-c" "true" ]; };
  dep = mk { name = "dep"; a = "${simple}"; b = multi.dev; c = "${multi.lib}/x"; };
  fodFlat256 = mk { name = "fod"; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = abc256; };
  fodFlat1 = mk { name = "fod"; outputHashAlgo = "sha1"; outputHash = "a9993e364706816aba3e25717850c26c9cd0d89d"; };
  fodFlat512 = mk { name = "fod"; outputHash =
    "sha512-3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw=="; };
  fodRec256 = mk { name = "fod"; outputHashMode = "recursive"; outputHashAlgo = "sha256";
    outputHash = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"; };
  fodRec256b = mk { name = "fod"; outputHashMode = "recursive"; outputHashAlgo = "sha256";
    outputHash = "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"; extra = "different builder env"; };
  fodRec1 = mk { name = "fod"; outputHashMode = "recursive"; outputHash = "sha1:kpcd173cq987hw957sx6m0868wv3x6d9"; };
  fodMd5 = mk { name = "fod"; outputHashAlgo = "md5"; outputHash = "900150983cd24fb0d6963f7d28e17f72"; };
  depFod = mk { name = "depfod"; a = fodFlat256; b = fodRec256; c = fodRec256b; };
  esc = mk { name = "esc"; args = [ "a\"b" "c\\d" "e\nf" "g\th" "i\rj" "k\001l" "é€" "$" ];
    "Zed" = "1"; "_u" = "2"; "a" = "3"; "B" = "4"; "é" = "5"; "a b" = "6"; "x=y" = "7"; "" = "8"; };
  withSrc = mk { name = "withsrc"; src = builtins.toFile "src.txt" "source text"; tree = ./tree; };
  ph = mk { name = "ph"; outputs = ["out" "bin"]; x = builtins.placeholder "out"; y = builtins.placeholder "bin"; };
  ca = caf { name = "ca"; outputs = [ "out" "dev" ]; args = ["-c" "x"]; };
  caFlat = caf { name = "caflat"; outputHashMode = "flat"; outputHashAlgo = "sha1"; };
  deferred = mk { name = "deferred"; a = ca.dev; b = "${ca}"; };
  deferred2 = mk { name = "deferred2"; a = deferred; };
  impure = mk { name = "impure"; __impure = true; };
  onImpure = mk { name = "onimpure"; a = impure; };
  ctl = mk { name = "ctl"; v = builtins.fromJSON ''"a\u0001b\u001fc\u007fd\u0000e"''; w = "tab\there"; };
  sa = derivation { name = "sa"; system = "x86_64-linux"; builder = "/bin/sh"; __structuredAttrs = true;
    args = ["-e" "x"]; outputs = ["out" "doc"]; int = 42; float = 1.5; bool = true; null = null;
    list = [ 1 "two" [ 3 ] ]; set = { b = 1; a = "x\ny\"z"; }; dep = simple; str = "${simple}/bin"; };
  empty = derivation { name = "empty"; system = "x86_64-linux"; builder = "/bin/sh";
    outputHashAlgo = "sha256"; outputHashMode = "recursive"; outputHash = ""; };

  # Dependency chains, diamonds and merged fixed inputs.
  chain = builtins.foldl' (prev: i: mk { name = "chain-${toString i}"; inherit prev; x = multi.lib; })
    simple (builtins.genList (x: x) 25);
  diamond = mk { name = "diamond"; a = multi.out; b = multi.dev; c = multi.lib; d = dep; e = chain;
    f = fodRec256; g = fodRec256b; h = fodFlat256; i = depFod; };
  outOrder = mk { name = "out-order"; outputs = [ "lib" "out" "bin" ]; };
  depOnOutOrder = mk { name = "dep-out-order"; x = outOrder.bin; y = outOrder.lib; z = [ outOrder ]; };

  # Odd strings in args, env keys and env values.
  odd = mk { name = "odd";
    args = [ "q\"q" "b\\s" "n\nl" "t\tt" "c\rr" "ü€😀" "$HOME" "${"$"}{x}" "" "\\\"\n" ];
    "" = "empty key"; "k=v" = ""; "é" = "\"\\\n\t\r"; dollar = "$out ${"$"}{out} ''"; empty = "";
    "with space" = " lead and trail "; "😀" = "emoji key"; };
  attrTypes = mk { name = "types"; i = 42; neg = -7; f = 1.5; t = true; fl = false; n = null;
    l = [ "a" 1 true null [ "b" "c" ] ]; p = ./tree; d = simple; };
  ignoreNulls = mk { name = "ignorenulls"; __ignoreNulls = true; n = null; x = "y"; };
  binary = mk { name = "binary"; v = builtins.readFile ./bin.dat; args = [ (builtins.readFile ./bin.dat) ]; };
  big = mk { name = "big"; v = builtins.concatStringsSep ""
    (builtins.genList (i: "line ${toString i} \"q\" \\ \t\n") 4000); };
  otherSystem = mk { name = "sys"; system = "aarch64-darwin"; };
  unicodeSystem = mk { name = "sys-u"; system = "x86_64-linüx€"; };
  oddName = mk { name = "a+b-c.d_e?f=g"; };
  dotName = mk { name = ".hidden..x"; };

  # Structured attrs and passAsFile.
  saBig = derivation { name = "sa-big"; system = "x86_64-linux"; builder = "/bin/sh"; __structuredAttrs = true;
    outputs = [ "out" "dev" "bin" ]; s = "q\"q\\b\nn\tt\rr é€ $ ${"$"}{"; nested = { a.b.c = [ 1 2.5 "x" null false ]; };
    dep = multi; devp = multi.dev; ph = builtins.placeholder "dev"; ctl = builtins.fromJSON ''"\u0001\u001f"''; };
  saCa = derivation { name = "sa-ca"; system = "x86_64-linux"; builder = "/bin/sh"; __structuredAttrs = true;
    __contentAddressed = true; outputs = [ "out" "lib" ]; x = ca.dev; };
  pass = mk { name = "pass"; passAsFile = [ "big" "other" ]; big = "lots\nof\ntext"; other = "${simple}"; };

  # Content-addressed, deferred and impure combinations.
  phCa = caf { name = "ph-ca"; outputs = ["out" "dev"]; x = builtins.placeholder "dev"; };
  caOnCa = caf { name = "ca-on-ca"; a = ca.dev; b = "${caFlat}"; };
  caSha512 = caf { name = "ca512"; outputHashMode = "recursive"; outputHashAlgo = "sha512"; };
  caOnIa = caf { name = "ca-on-ia"; a = dep; b = multi.lib; };
  iaOnDeferred = mk { name = "ia-on-deferred"; a = deferred2; b = simple; };
  fodOnCa = mk { name = "fod-on-ca"; a = ca; outputHashMode = "flat"; outputHashAlgo = "sha256"; outputHash = abc256; };
  iaOnFodOnCa = mk { name = "ia-on-fod-on-ca"; a = fodOnCa; };
  impureMulti = mk { name = "impure-multi"; __impure = true; outputs = [ "out" "doc" ]; };
  impureOnCa = mk { name = "impure-on-ca"; __impure = true; a = ca; };
  fodImpureInput = mk { name = "fod-impure-input"; a = impure; outputHashAlgo = "sha1";
    outputHash = "a9993e364706816aba3e25717850c26c9cd0d89d"; };

  # Sources and `.drv` files as inputs.
  deep = mk { name = "deep"; drv = dep.drvPath; };
  discard = mk { name = "discard"; drv = builtins.unsafeDiscardOutputDependency simple.drvPath; };
  textRef = mk { name = "textref"; f = builtins.toFile "b" "ref ${builtins.toFile "a" "A"}"; };
  script = derivation { name = "script"; system = "x86_64-linux"; builder = ./builder.sh; args = [ ./tree "x" ]; };

  #GENERATED#
}
"#;

/// The fixed-output matrix: every algorithm, both ingestion methods, and every way of
/// writing the hash. All forms of one (algorithm, method) share a name and so an
/// output path, which makes their fixed hashes merge in `allFods`.
fn generated_attrs() -> String {
    let mut s = String::new();
    let mut names = Vec::new();
    for algo in Algorithm::ALL {
        for mode in ["flat", "recursive"] {
            let hash = Hash::digest(algo, format!("content {algo} {mode}"));
            let forms = [
                ("base16", hash.to_base16(), true),
                ("nix32", hash.to_nix32(), true),
                ("base64", hash.to_base64(), true),
                ("sri", hash.to_sri(), false),
                ("typed", format!("{algo}:{}", hash.to_nix32()), false),
            ];
            for (form, text, with_algo) in forms {
                let attr = format!("fod_{algo}_{mode}_{form}");
                let algo_attr = if with_algo {
                    format!("outputHashAlgo = \"{algo}\";")
                } else {
                    String::new()
                };
                s.push_str(&format!(
                    "  {attr} = mk {{ name = \"fod-{algo}-{mode}\"; outputHashMode = \"{mode}\"; {algo_attr} outputHash = \"{text}\"; form = \"{form}\"; }};\n"
                ));
                names.push(attr);
            }
        }
    }
    s.push_str(&format!(
        "  allFods = mk {{ name = \"all-fods\"; fods = [ {} ]; }};\n",
        names.join(" ")
    ));
    s.push_str(&format!(
        "  longName = mk {{ name = \"{}\"; }};\n",
        "l".repeat(207)
    ));
    s
}

fn require_nix() {
    let out = Command::new("nix").arg("--version").output();
    match out {
        Ok(o) if o.status.success() => {
            let version = String::from_utf8_lossy(&o.stdout);
            assert!(
                version.starts_with("nix (Nix) 2.8"),
                "this test compares with Nix 2.8, found {version}; run scripts/test.sh"
            );
        }
        _ => panic!(
            "Nix 2.8 (`nix`, `nix-instantiate`) is required for the differential tests but was not \
             found on PATH; run scripts/test.sh, which installs the prerequisites"
        ),
    }
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (run scripts/test.sh to install Nix)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn write_fixtures(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
    std::fs::write(dir.join("tree/file"), "hello\n").unwrap();
    std::fs::write(dir.join("tree/sub/x"), "x").unwrap();
    std::fs::write(dir.join("builder.sh"), "#!/bin/sh\necho hi > $out\n").unwrap();
    // Every byte but NUL, so strings that are not UTF-8 reach the `.drv` and JSON.
    let all_bytes: Vec<u8> = (1u8..=255).collect();
    std::fs::write(dir.join("bin.dat"), all_bytes).unwrap();
    let file = dir.join("drvs.nix");
    std::fs::write(&file, EXPR.replace("#GENERATED#", &generated_attrs())).unwrap();
    file
}

struct Scratch {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        make_writable(&self.root);
    }
}

impl Scratch {
    fn file(&self, path: &StorePath) -> PathBuf {
        self.root.join("nix/store").join(path.base_name())
    }

    fn read(&self, store_dir: &StoreDir, path: &StorePath) -> Result<Derivation, Error> {
        let file = self.file(path);
        let bytes = std::fs::read(&file).map_err(|source| Error::Io {
            path: file.display().to_string(),
            source,
        })?;
        Derivation::from_drv_file(store_dir, path, &bytes)
    }
}

/// Instantiate everything once (all attributes in one `nix-instantiate` run).
fn instantiate() -> (Scratch, Vec<StorePath>) {
    require_nix();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let file = write_fixtures(&src);
    let root = tmp.path().join("store");
    run(Command::new("nix-instantiate")
        .arg("--extra-experimental-features")
        .arg(FEATURES)
        .arg("--store")
        .arg(&root)
        .arg(&file));
    let mut drvs: Vec<StorePath> = std::fs::read_dir(root.join("nix/store"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.ends_with(".drv")
                .then(|| StorePath::from_base_name(&name).unwrap())
        })
        .collect();
    drvs.sort();
    (Scratch { _tmp: tmp, root }, drvs)
}

#[test]
fn kiln_agrees_with_nix_on_every_instantiated_drv() {
    let (scratch, drvs) = instantiate();
    let sd = StoreDir::default();
    // 85 top-level attributes plus the chain and the `.drv`s they pull in.
    assert!(
        drvs.len() >= 100,
        "only {} .drv files were instantiated",
        drvs.len()
    );

    let mut failures: Vec<String> = Vec::new();
    let mut parsed: BTreeMap<StorePath, Derivation> = BTreeMap::new();
    let mut cache = DrvHashCache::new();
    let mut resolve = |p: &StorePath| scratch.read(&sd, p);

    for path in &drvs {
        let bytes = std::fs::read(scratch.file(path)).unwrap();
        let drv = match Derivation::from_drv_file(&sd, path, &bytes) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{path}: parse: {e}"));
                continue;
            }
        };
        // 1. Byte-identical reprint.
        let printed = drv.to_aterm(&sd).unwrap();
        if printed != bytes {
            failures.push(format!(
                "{path}: reprint differs\n nix:  {}\n kiln: {}",
                BString::from(bytes.clone()),
                BString::from(printed)
            ));
        }
        // 2. The `.drv` path.
        match drv.drv_path(&sd) {
            Ok(p) if &p == path => {}
            other => failures.push(format!("{path}: drv path {other:?}")),
        }
        // 3. Output paths from a blanked copy.
        let blank = blank_outputs(&drv);
        match fill_in_output_paths(&sd, blank, &mut cache, &mut resolve) {
            Ok(filled) if filled == drv => {}
            Ok(filled) => failures.push(format!(
                "{path}: fill-in gives\n {:?}\n env {:?}\nwant\n {:?}\n env {:?}",
                filled.outputs, filled.env, drv.outputs, drv.env
            )),
            Err(e) => failures.push(format!("{path}: fill-in: {e}")),
        }
        parsed.insert(path.clone(), drv);
    }

    // 4. JSON: one `nix show-derivation` call over every `.drv`.
    let mut cmd = Command::new("nix");
    cmd.arg("--extra-experimental-features")
        .arg(FEATURES)
        .arg("show-derivation")
        .arg("--store")
        .arg(&scratch.root);
    for path in &drvs {
        cmd.arg(sd.display(path));
    }
    let nix_json = run(&mut cmd);
    let kiln_json = kiln_derivation::json::show_derivations(&sd, parsed.iter()).unwrap();
    if nix_json != kiln_json {
        let at = nix_json
            .iter()
            .zip(&kiln_json)
            .position(|(a, b)| a != b)
            .unwrap_or(nix_json.len().min(kiln_json.len()));
        let from = at.saturating_sub(200);
        failures.push(format!(
            "JSON bytes differ at byte {at}:\n nix:  {}\n kiln: {}",
            BString::from(&nix_json[from..(at + 100).min(nix_json.len())]),
            BString::from(&kiln_json[from..(at + 100).min(kiln_json.len())])
        ));
    }
    // Compare as values too, per derivation, where the text is valid UTF-8 (the
    // `binary` derivation holds raw bytes ≥ 0x80 that JSON parsers refuse).
    let nix_value = serde_json::from_slice::<serde_json::Value>(
        &String::from_utf8_lossy(&nix_json).into_owned().into_bytes(),
    )
    .unwrap();
    let kiln_value = serde_json::from_slice::<serde_json::Value>(
        &String::from_utf8_lossy(&kiln_json)
            .into_owned()
            .into_bytes(),
    )
    .unwrap();
    let nix_obj = nix_value.as_object().unwrap();
    assert_eq!(
        nix_obj.len(),
        drvs.len(),
        "nix show-derivation printed {} entries",
        nix_obj.len()
    );
    for (key, value) in nix_obj {
        if kiln_value.get(key) != Some(value) {
            failures.push(format!("{key}: JSON value differs"));
        }
    }

    // Spot checks that the spread really covers what it should.
    let count = |f: &dyn Fn(&Derivation) -> bool| parsed.values().filter(|d| f(d)).count();
    assert!(
        count(&|d| matches!(d.outputs.get("out"), Some(DerivationOutput::CAFixed { .. }))) >= 45
    );
    assert!(
        count(&|d| d
            .outputs
            .values()
            .any(|o| matches!(o, DerivationOutput::CAFloating { .. })))
            >= 7
    );
    assert!(
        count(&|d| d
            .outputs
            .values()
            .any(|o| matches!(o, DerivationOutput::Deferred)))
            >= 4
    );
    assert!(
        count(&|d| d
            .outputs
            .values()
            .any(|o| matches!(o, DerivationOutput::Impure { .. })))
            >= 3
    );
    assert!(count(&|d| d.env.contains_key(b"__json".as_slice())) >= 3);
    assert!(count(&|d| d.input_srcs.iter().any(StorePath::is_derivation)) >= 1);
    assert!(count(&|d| d.env.values().any(|v| std::str::from_utf8(v).is_err())) >= 1);

    eprintln!("compared {} .drv files with Nix", drvs.len());
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The derivation as the evaluator has it before computing paths: input-addressed
/// outputs deferred with empty env vars, and the env vars of the other kinds removed.
fn blank_outputs(drv: &Derivation) -> Derivation {
    let mut blank = drv.clone();
    let input_addressed = drv.outputs.values().all(|o| {
        matches!(
            o,
            DerivationOutput::InputAddressed(_) | DerivationOutput::Deferred
        )
    });
    for (name, output) in blank.outputs.iter_mut() {
        if input_addressed {
            *output = DerivationOutput::Deferred;
            blank.env.insert(name.as_str().into(), BString::default());
        } else {
            blank.env.remove(name.as_bytes());
        }
    }
    blank
}

/// Nix makes store objects read-only; give write access back so the temporary
/// directory can be removed when the test is not run as root.
fn make_writable(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let mut perms = meta.permissions();
    perms.set_mode(perms.mode() | 0o700);
    let _ = std::fs::set_permissions(path, perms);
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                make_writable(&entry.path());
            }
        }
    }
}
