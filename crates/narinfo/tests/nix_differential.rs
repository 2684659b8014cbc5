//! Differential test against the installed Nix 2.8: Nix generates a key pair, adds
//! paths to a scratch store and copies them to a `file://` binary cache with
//! `compression=none&secret-key=…`; we must read its narinfo files, print them back
//! byte for byte, reproduce its signatures from our own fingerprint, and verify them
//! with its public-key file.
//!
//! This test fails (it does not skip) when Nix is not available: run the suite through
//! `scripts/test.sh`, which provides it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use kiln_hash::Hash;
use kiln_narinfo::{NarInfo, PublicKey, PublicKeys, SecretKey, Trust};
use kiln_store_path::StoreDir;

const HOW_TO_RUN: &str = "Nix 2.8 (nix-store, nix-instantiate, nix) must be on PATH for this \
                          differential test; run the tests through scripts/test.sh";

/// A scratch directory removed on drop (store files are read-only, so make them writable
/// first).
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("kiln-narinfo-nix-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).expect("create scratch directory");
        Scratch(dir)
    }
}

fn make_writable(path: &Path) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.file_type().is_symlink() {
        return;
    }
    let mode = meta.permissions().mode() | 0o700;
    let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
    if meta.is_dir() {
        if let Ok(entries) = fs::read_dir(path) {
            for entry in entries.flatten() {
                make_writable(&entry.path());
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        make_writable(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Run a Nix command with its caches and config confined to the scratch directory.
fn run(scratch: &Path, program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .env("XDG_CACHE_HOME", scratch.join("xdg-cache"))
        .env("XDG_CONFIG_HOME", scratch.join("xdg-config"))
        .env("NIX_CONFIG", "substituters =")
        .output()
        .unwrap_or_else(|e| panic!("cannot run '{program}' ({e}). {HOW_TO_RUN}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout_line(output: &Output) -> String {
    String::from_utf8(output.stdout.clone())
        .expect("UTF-8 output")
        .trim()
        .to_string()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

#[test]
fn nix_written_narinfo_round_trips_and_signatures_match() {
    let version = Command::new("nix-store")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run 'nix-store' ({e}). {HOW_TO_RUN}"));
    assert!(
        version.status.success(),
        "'nix-store --version' failed. {HOW_TO_RUN}"
    );
    let version = stdout_line(&version);
    eprintln!("differential test against {version}");

    let scratch = Scratch::new();
    let root = scratch.0.as_path();
    let store = root.join("store");
    let cache = root.join("cache");
    let (sk_file, pk_file) = (root.join("secret.key"), root.join("public.key"));

    // 1. Nix's key pair.
    run(
        root,
        "nix-store",
        &[
            "--generate-binary-cache-key",
            "kiln-differential-1",
            path_str(&sk_file),
            path_str(&pk_file),
        ],
    );
    let sk_text = fs::read_to_string(&sk_file).unwrap();
    let pk_text = fs::read_to_string(&pk_file).unwrap();
    let sk = SecretKey::parse(&sk_text).expect("Nix's secret key parses");
    let pk = PublicKey::parse(&pk_text).expect("Nix's public key parses");
    assert_eq!(sk.to_nix_string(), sk_text, "secret key text round trip");
    assert_eq!(pk.to_string(), pk_text, "public key text round trip");
    assert_eq!(sk.to_public_key(), pk, "our public key from Nix's seed");

    // 2. A source path (fixed:r:sha256, no references) and a .drv (text, with a
    //    reference to the source path) in a scratch store.
    let file = root.join("payload.txt");
    fs::write(&file, "kiln narinfo differential test\n").unwrap();
    let store_arg = path_str(&store);
    let source_path = stdout_line(&run(
        root,
        "nix-store",
        &["--store", store_arg, "--add", path_str(&file)],
    ));
    let expr = root.join("drv.nix");
    fs::write(
        &expr,
        "derivation { name = \"kiln-narinfo-diff\"; system = \"x86_64-linux\"; builder = ./payload.txt; }\n",
    )
    .unwrap();
    let drv_path = stdout_line(&run(
        root,
        "nix-instantiate",
        &["--store", store_arg, path_str(&expr)],
    ));

    // 3. Copy both to a signed, uncompressed file:// cache (a `.drv` needs
    //    `--derivation`, or `nix copy` would build it).
    let to = format!(
        "file://{}?compression=none&secret-key={}",
        path_str(&cache),
        path_str(&sk_file)
    );
    let copy = ["--extra-experimental-features", "nix-command", "copy"];
    let target = ["--store", store_arg, "--to", &to];
    let args: Vec<&str> = [&copy[..], &target[..], &[&source_path]].concat();
    run(root, "nix", &args);
    let args: Vec<&str> = [&copy[..], &["--derivation"], &target[..], &[&drv_path]].concat();
    run(root, "nix", &args);

    // 4. Read what Nix wrote and compare with what we compute.
    let dir = StoreDir::default();
    let keys: PublicKeys = pk.clone().into();
    for full in [&source_path, &drv_path] {
        let path = dir.parse(full).unwrap();
        let narinfo_file = cache.join(format!("{}.narinfo", path.hash_part()));
        let text = fs::read_to_string(&narinfo_file)
            .unwrap_or_else(|e| panic!("{}: {e}", narinfo_file.display()));

        let info = NarInfo::parse(&dir, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(info.path, path);
        assert_eq!(info.to_text(&dir), text, "print(parse(x)) != x");

        let nix_sig = text
            .lines()
            .find_map(|l| l.strip_prefix("Sig: "))
            .expect("Nix wrote a Sig line");
        let fingerprint = info.fingerprint(&dir).unwrap();
        assert_eq!(
            sk.sign(fingerprint.as_bytes()),
            nix_sig,
            "signature over {fingerprint}"
        );
        assert!(info.verify_signature(&dir, nix_sig, &keys).unwrap());
        assert_eq!(info.count_valid_signatures(&dir, &keys).unwrap(), 1);

        let mut resigned = info.clone();
        resigned.sigs.clear();
        resigned.sign(&dir, &sk).unwrap();
        assert_eq!(resigned.to_text(&dir), text);

        let mut tampered = info.clone();
        tampered.nar_size += 1;
        assert!(!tampered.verify_signature(&dir, nix_sig, &keys).unwrap());

        // Both are content-addressed, and their claims check out.
        assert!(info.ca.is_some());
        assert!(info.is_content_addressed(&dir), "ca of {full}");
        assert_eq!(
            info.trust(&dir, &PublicKeys::new()).unwrap(),
            Trust::ContentAddressed
        );

        // Uncompressed: the file at URL is the NAR, and both hashes are its sha256.
        assert_eq!(info.compression, "none");
        let nar = fs::read(cache.join(&info.url)).unwrap();
        assert_eq!(info.file_size, nar.len() as u64);
        assert_eq!(info.nar_size, nar.len() as u64);
        assert_eq!(info.file_hash.as_ref(), Some(&Hash::sha256(&nar)));
        assert_eq!(info.nar_hash, Hash::sha256(&nar));
    }

    // The .drv refers to the source path; the fingerprint lists it as a full path.
    let drv_info = NarInfo::parse(
        &dir,
        &fs::read_to_string(cache.join(format!(
            "{}.narinfo",
            dir.parse(&drv_path).unwrap().hash_part()
        )))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(drv_info.references.len(), 1);
    assert!(drv_info
        .fingerprint(&dir)
        .unwrap()
        .ends_with(&format!(";{source_path}")));
}
