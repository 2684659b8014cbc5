//! narinfo vectors observed from Nix 2.8 (`nix copy --to file://…`), byte for byte.

use kiln_narinfo::{verify_detached, NarInfo, PublicKey, PublicKeys, SecretKey, Trust};
use kiln_store_path::StoreDir;

const SECRET: &str = "test-key-1:WJ9Rd+//x/ALL+9grDCy1MHoxoXZo7NXL0ZzkAb19XyN7ZRQhpJ/36vv0TCswT5spELANqWdTaanS1nKl+zcrg==";
const PUBLIC: &str = "test-key-1:je2UUIaSf9+r79EwrME+bKRCwDalnU2mp0tZypfs3K4=";

const TREE: &str = "StorePath: /nix/store/rnsh685m80sc5ikbvk76sy5b0q80xpff-tree
URL: nar/0n0q22qzs6n6y8z5187gvcrvag7zki9klwfp6arz3lchxp7b3msz.nar
Compression: none
FileHash: sha256:0n0q22qzs6n6y8z5187gvcrvag7zki9klwfp6arz3lchxp7b3msz
FileSize: 880
NarHash: sha256:0n0q22qzs6n6y8z5187gvcrvag7zki9klwfp6arz3lchxp7b3msz
NarSize: 880
References: 
Sig: test-key-1:tTITg1ydc7O+8uPuakdpvh5UPh5uVkcQtKSwP1SKw9LmHy0j4vR1yIOBmYtTzateiVjEsIB0pqqMjnORW+UzCA==
CA: fixed:r:sha256:0n0q22qzs6n6y8z5187gvcrvag7zki9klwfp6arz3lchxp7b3msz
";
const TREE_FINGERPRINT: &str = "1;/nix/store/rnsh685m80sc5ikbvk76sy5b0q80xpff-tree;sha256:0n0q22qzs6n6y8z5187gvcrvag7zki9klwfp6arz3lchxp7b3msz;880;";

const DEP: &str = "StorePath: /nix/store/abxcn50cldw72vl3shm3i34gsa7bnz7b-dep.txt
URL: nar/0rphf0qg6xvzblh42pal91kdndnx1r85ri7zj162hixr0b5706d4.nar
Compression: none
FileHash: sha256:0rphf0qg6xvzblh42pal91kdndnx1r85ri7zj162hixr0b5706d4
FileSize: 128
NarHash: sha256:0rphf0qg6xvzblh42pal91kdndnx1r85ri7zj162hixr0b5706d4
NarSize: 128
References: 
Sig: test-key-1:dgE1OXs3PbeeeB73wRrmLRRO/vJmvqvdP4HWAYYKkA9/Xqor/b6mYRxqTqDpmBnXUs1TAUO8J0a2QCoZURMOAQ==
CA: text:sha256:0cfzzvyc0byk59pffqr7k9f02xmgbpxn7i4ssszsl69zzvd50qzj
";
const DEP_FINGERPRINT: &str = "1;/nix/store/abxcn50cldw72vl3shm3i34gsa7bnz7b-dep.txt;sha256:0rphf0qg6xvzblh42pal91kdndnx1r85ri7zj162hixr0b5706d4;128;";

const IAOUT: &str = "StorePath: /nix/store/58zxgd6vvcq48ijl1irh1dj8ad95wykv-iaout
URL: nar/0jxc0cag3zkyhklwhsdqsy40pap2yb74r21ysh48m5vgn78rzkz1.nar
Compression: none
FileHash: sha256:0jxc0cag3zkyhklwhsdqsy40pap2yb74r21ysh48m5vgn78rzkz1
FileSize: 216
NarHash: sha256:0jxc0cag3zkyhklwhsdqsy40pap2yb74r21ysh48m5vgn78rzkz1
NarSize: 216
References: 58zxgd6vvcq48ijl1irh1dj8ad95wykv-iaout abxcn50cldw72vl3shm3i34gsa7bnz7b-dep.txt
Deriver: rqr0qnzyqnd1c7y3g0vfcc4k7xr7dq0y-iaout.drv
Sig: test-key-1:ZnNIKqjn58VnZwZUf99RgG2ff7sAy/bU0yECTucBkRYfPxgvL/mDYUrxkhl9E4sft76PDR7jzmvW4Qkz6EP9CQ==
";
const IAOUT_FINGERPRINT: &str = "1;/nix/store/58zxgd6vvcq48ijl1irh1dj8ad95wykv-iaout;sha256:0jxc0cag3zkyhklwhsdqsy40pap2yb74r21ysh48m5vgn78rzkz1;216;/nix/store/58zxgd6vvcq48ijl1irh1dj8ad95wykv-iaout,/nix/store/abxcn50cldw72vl3shm3i34gsa7bnz7b-dep.txt";

fn store() -> StoreDir {
    StoreDir::default()
}

fn keys() -> PublicKeys {
    PublicKey::parse(PUBLIC).unwrap().into()
}

fn sig_line(text: &str) -> &str {
    text.lines()
        .find_map(|l| l.strip_prefix("Sig: "))
        .expect("vector has a Sig line")
}

/// Everything §7.5 promises about one narinfo vector.
fn check_vector(text: &str, fingerprint: &str) -> NarInfo {
    let dir = store();
    let info = NarInfo::parse(&dir, text).unwrap();
    assert_eq!(
        info.to_text(&dir),
        text,
        "parse -> print is not the identity"
    );
    assert_eq!(info.fingerprint(&dir).unwrap(), fingerprint);

    let sk = SecretKey::parse(SECRET).unwrap();
    let expected_sig = sig_line(text);
    assert_eq!(sk.sign(fingerprint.as_bytes()), expected_sig);

    // Re-signing a copy without signatures reproduces the file exactly.
    let mut unsigned = info.clone();
    unsigned.sigs.clear();
    unsigned.sign(&dir, &sk).unwrap();
    assert_eq!(unsigned.to_text(&dir), text);

    let keys = keys();
    assert!(verify_detached(fingerprint.as_bytes(), expected_sig, &keys).unwrap());
    assert!(info.verify_signature(&dir, expected_sig, &keys).unwrap());
    assert_eq!(info.count_valid_signatures(&dir, &keys).unwrap(), 1);

    // A tampered fingerprint (NAR size changed) fails to verify.
    let tampered = fingerprint.replacen(&format!(";{};", info.nar_size), ";1;", 1);
    assert_ne!(tampered, fingerprint);
    assert!(!verify_detached(tampered.as_bytes(), expected_sig, &keys).unwrap());
    let mut tampered_info = info.clone();
    tampered_info.nar_size += 1;
    assert_eq!(
        tampered_info.count_valid_signatures(&dir, &keys).unwrap(),
        0
    );
    info
}

#[test]
fn test_key_pair_matches() {
    let sk = SecretKey::parse(SECRET).unwrap();
    assert_eq!(sk.name(), "test-key-1");
    assert_eq!(sk.to_public_key().to_string(), PUBLIC);
    assert_eq!(sk.to_nix_string(), SECRET);
    assert_eq!(PublicKey::parse(PUBLIC).unwrap().to_string(), PUBLIC);
}

#[test]
fn tree_vector() {
    let dir = store();
    let info = check_vector(TREE, TREE_FINGERPRINT);
    assert_eq!(info.compression, "none");
    assert_eq!(info.file_size, 880);
    assert!(info.references.is_empty());
    assert_eq!(info.deriver, None);
    assert!(info.is_content_addressed(&dir));
    assert_eq!(
        info.trust(&dir, &PublicKeys::new()).unwrap(),
        Trust::ContentAddressed
    );
}

#[test]
fn text_vector() {
    let dir = store();
    let info = check_vector(DEP, DEP_FINGERPRINT);
    assert!(info.is_content_addressed(&dir));
    // A wrong claim is not trusted, and then signatures count.
    let mut wrong = info.clone();
    wrong.path = dir
        .parse("/nix/store/abxcn50cldw72vl3shm3i34gsa7bnz7c-dep.txt")
        .unwrap();
    assert!(!wrong.is_content_addressed(&dir));
    assert_eq!(wrong.trust(&dir, &keys()).unwrap(), Trust::Signatures(0));
}

#[test]
fn iaout_vector() {
    let dir = store();
    let info = check_vector(IAOUT, IAOUT_FINGERPRINT);
    assert_eq!(info.references.len(), 2);
    assert!(info.references.contains(&info.path), "self-reference kept");
    assert_eq!(
        info.deriver.as_ref().map(|d| d.base_name()),
        Some("rqr0qnzyqnd1c7y3g0vfcc4k7xr7dq0y-iaout.drv")
    );
    assert!(!info.is_content_addressed(&dir));
    assert_eq!(info.content_addressed_path(&dir).unwrap(), None);
    assert_eq!(info.trust(&dir, &keys()).unwrap(), Trust::Signatures(1));
    assert!(info.trust(&dir, &keys()).unwrap().meets(1));
    assert!(!info.trust(&dir, &PublicKeys::new()).unwrap().meets(1));
}

#[test]
fn iaout_fingerprint_to_signature() {
    // The portable part of the third vector: fingerprint -> signature.
    let sk = SecretKey::parse(SECRET).unwrap();
    assert_eq!(
        sk.sign(IAOUT_FINGERPRINT.as_bytes()),
        "test-key-1:ZnNIKqjn58VnZwZUf99RgG2ff7sAy/bU0yECTucBkRYfPxgvL/mDYUrxkhl9E4sft76PDR7jzmvW4Qkz6EP9CQ=="
    );
}

#[test]
fn reference_order_does_not_matter_when_reading() {
    let dir = store();
    let swapped = IAOUT.replace(
        "References: 58zxgd6vvcq48ijl1irh1dj8ad95wykv-iaout abxcn50cldw72vl3shm3i34gsa7bnz7b-dep.txt",
        "References:  abxcn50cldw72vl3shm3i34gsa7bnz7b-dep.txt   58zxgd6vvcq48ijl1irh1dj8ad95wykv-iaout ",
    );
    let info = NarInfo::parse(&dir, &swapped).unwrap();
    assert_eq!(info.to_text(&dir), IAOUT);
}

#[test]
fn other_store_dir() {
    // Same record under another store directory: full paths change, base names do not.
    let dir = StoreDir::new("/other/store").unwrap();
    let text = IAOUT.replace("StorePath: /nix/store/", "StorePath: /other/store/");
    let info = NarInfo::parse(&dir, &text).unwrap();
    assert_eq!(info.to_text(&dir), text);
    assert_eq!(
        info.fingerprint(&dir).unwrap(),
        IAOUT_FINGERPRINT.replace("/nix/store/", "/other/store/")
    );
    assert!(
        NarInfo::parse(&dir, IAOUT).is_err(),
        "path outside the store dir"
    );
}
