//! 2.8's narinfo reader rules (§7.2), one by one, including its quirks.

use kiln_narinfo::{Error, NarInfo};
use kiln_store_path::StoreDir;

const PATH: &str = "/nix/store/rnsh685m80sc5ikbvk76sy5b0q80xpff-tree";
const HASH: &str = "sha256:0n0q22qzs6n6y8z5187gvcrvag7zki9klwfp6arz3lchxp7b3msz";
const REF_A: &str = "58zxgd6vvcq48ijl1irh1dj8ad95wykv-iaout";
const REF_B: &str = "abxcn50cldw72vl3shm3i34gsa7bnz7b-dep.txt";

/// A minimal narinfo as lines (without newlines).
fn lines() -> Vec<String> {
    vec![
        format!("StorePath: {PATH}"),
        "URL: nar/x.nar".into(),
        "Compression: none".into(),
        format!("FileHash: {HASH}"),
        "FileSize: 880".into(),
        format!("NarHash: {HASH}"),
        "NarSize: 880".into(),
        "References: ".into(),
    ]
}

fn join(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn parse(text: &str) -> Result<NarInfo, Error> {
    NarInfo::parse(&StoreDir::default(), text)
}

fn print(info: &NarInfo) -> String {
    info.to_text(&StoreDir::default())
}

/// The minimal narinfo with line `index` (0-based) replaced by `line`.
fn with_line(index: usize, line: &str) -> String {
    let mut l = lines();
    l[index] = line.to_string();
    join(&l)
}

fn without_line(index: usize) -> String {
    let mut l = lines();
    l.remove(index);
    join(&l)
}

fn with_extra(extra: &[&str]) -> String {
    let mut l = lines();
    l.extend(extra.iter().map(|s| s.to_string()));
    join(&l)
}

#[test]
fn minimal_round_trip() {
    let text = join(&lines());
    assert_eq!(print(&parse(&text).unwrap()), text);
}

#[test]
fn unknown_keys_are_ignored() {
    let text = with_extra(&["Foo: bar", "Provenance: {\"x\":1}", ": empty key", "x:y"]);
    let info = parse(&text).unwrap();
    assert_eq!(print(&info), join(&lines()));
}

#[test]
fn unknown_deriver_means_none() {
    let info = parse(&with_extra(&["Deriver: unknown-deriver"])).unwrap();
    assert_eq!(info.deriver, None);
    assert_eq!(print(&info), join(&lines()));
}

#[test]
fn empty_deriver_is_a_bad_path() {
    let err = parse(&with_extra(&["Deriver: "])).unwrap_err();
    assert!(matches!(err, Error::BadStorePath { line: 9, ref key, .. } if key == "Deriver"));
}

#[test]
fn missing_or_empty_compression_is_bzip2() {
    let info = parse(&without_line(2)).unwrap();
    assert_eq!(info.compression, "bzip2");
    let info = parse(&with_line(2, "Compression: ")).unwrap();
    assert_eq!(info.compression, "bzip2");
    assert!(print(&info).contains("\nCompression: bzip2\n"));
}

#[test]
fn required_fields() {
    assert_eq!(
        parse(&without_line(0)).unwrap_err(),
        Error::MissingField { key: "StorePath" }
    );
    assert_eq!(
        parse(&without_line(1)).unwrap_err(),
        Error::MissingField { key: "URL" }
    );
    assert_eq!(
        parse(&with_line(1, "URL: ")).unwrap_err(),
        Error::MissingField { key: "URL" }
    );
    assert_eq!(
        parse(&without_line(5)).unwrap_err(),
        Error::MissingField { key: "NarHash" }
    );
    assert_eq!(parse(&without_line(6)).unwrap_err(), Error::ZeroNarSize);
    assert_eq!(
        parse(&with_line(6, "NarSize: 0")).unwrap_err(),
        Error::ZeroNarSize
    );
    assert_eq!(
        parse("").unwrap_err(),
        Error::MissingField { key: "StorePath" }
    );
}

#[test]
fn optional_fields_may_be_absent() {
    // FileHash, FileSize and References are optional for the reader.
    let mut l = lines();
    l.retain(|x| {
        !x.starts_with("FileHash") && !x.starts_with("FileSize") && !x.starts_with("References")
    });
    let info = parse(&join(&l)).unwrap();
    assert_eq!(info.file_hash, None);
    assert_eq!(info.file_size, 0);
    // Printing leaves out the absent FileHash, and reads back to the same record.
    assert_eq!(parse(&print(&info)).unwrap(), info);
}

#[test]
fn duplicate_references_are_corrupt() {
    let text = with_line(7, &format!("References: {REF_A}"));
    let text = format!("{text}References: {REF_B}\n");
    let err = parse(&text).unwrap_err();
    assert_eq!(
        err,
        Error::Duplicate {
            line: 9,
            key: "References".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "narinfo line 9: duplicate 'References' line"
    );
}

#[test]
fn references_after_an_empty_references_line_are_accepted() {
    // 2.8 only complains when the set read so far is non-empty.
    let info = parse(&with_extra(&[&format!("References: {REF_A}")])).unwrap();
    assert_eq!(info.references.len(), 1);
}

#[test]
fn duplicate_ca_is_corrupt() {
    let ca = format!("CA: fixed:r:{HASH}");
    let err = parse(&with_extra(&[&ca, &ca])).unwrap_err();
    assert_eq!(
        err,
        Error::Duplicate {
            line: 10,
            key: "CA".into()
        }
    );
    // An empty CA line is "no CA", so a later one is not a duplicate.
    let info = parse(&with_extra(&["CA: ", &ca])).unwrap();
    assert!(info.ca.is_some());
    assert!(info.is_content_addressed(&StoreDir::default()));
}

#[test]
fn hash_fields_need_a_type() {
    let bare = HASH.strip_prefix("sha256:").unwrap();
    let err = parse(&with_line(5, &format!("NarHash: {bare}"))).unwrap_err();
    assert!(
        matches!(&err, Error::BadHash { line: 6, key, source: kiln_hash::Error::MissingAlgorithm(_) } if key == "NarHash"),
        "{err:?}"
    );
    let err = parse(&with_line(3, &format!("FileHash: {bare}"))).unwrap_err();
    assert!(matches!(&err, Error::BadHash { line: 4, key, .. } if key == "FileHash"));
    assert!(err
        .to_string()
        .starts_with("narinfo line 4: bad hash in 'FileHash'"));
}

#[test]
fn hash_fields_accept_sri_and_base16() {
    let hash = kiln_hash::Hash::parse(HASH, None).unwrap();
    let info = parse(&with_line(5, &format!("NarHash: {}", hash.to_sri()))).unwrap();
    assert_eq!(info.nar_hash, hash);
    let info = parse(&with_line(
        5,
        &format!("NarHash: sha256:{}", hash.to_base16()),
    ))
    .unwrap();
    assert_eq!(info.nar_hash, hash);
    // Printing normalises to sha256:<nix32>.
    assert_eq!(print(&info), join(&lines()));
}

#[test]
fn bad_hashes_never_panic() {
    for value in [
        "sha256:",
        "blake3:abc",
        "sha256-!!!!",
        // 52 bytes whose last character is multi-byte.
        &format!("sha256:{}é", "0".repeat(50)),
        &format!("sha256:é{}", "0".repeat(50)),
    ] {
        let err = parse(&with_line(5, &format!("NarHash: {value}"))).unwrap_err();
        assert!(
            matches!(err, Error::BadHash { line: 6, .. }),
            "{value}: {err:?}"
        );
    }
}

#[test]
fn bad_numbers() {
    for value in ["abc", "-1", "", " 1", "18446744073709551616", "1.5"] {
        let err = parse(&with_line(4, &format!("FileSize: {value}"))).unwrap_err();
        assert_eq!(
            err,
            Error::BadNumber {
                line: 5,
                key: "FileSize".into(),
                value: value.into()
            }
        );
    }
    assert!(matches!(
        parse(&with_line(6, "NarSize: x")).unwrap_err(),
        Error::BadNumber { line: 7, .. }
    ));
    assert_eq!(
        parse(&with_line(4, "FileSize: 18446744073709551615"))
            .unwrap()
            .file_size,
        u64::MAX
    );
}

#[test]
fn bad_store_paths() {
    let err = parse(&with_line(
        0,
        "StorePath: /elsewhere/rnsh685m80sc5ikbvk76sy5b0q80xpff-tree",
    ))
    .unwrap_err();
    assert!(matches!(&err, Error::BadStorePath { line: 1, key, .. } if key == "StorePath"));
    let err = parse(&with_line(7, "References: not-a-path")).unwrap_err();
    assert!(matches!(&err, Error::BadStorePath { line: 8, key, .. } if key == "References"));
    // CRLF line endings leave a '\r' in the value.
    let crlf = join(&lines()).replace('\n', "\r\n");
    assert!(matches!(
        parse(&crlf).unwrap_err(),
        Error::BadStorePath { line: 1, .. }
    ));
}

#[test]
fn bad_content_addresses() {
    let hash = kiln_hash::Hash::parse(HASH, None).unwrap();
    for value in [
        "nope:sha256:abc".to_string(),
        format!("text:{}", hash.to_sri()),
        format!("fixed:r:{}", hash.to_sri()),
        format!("fixed:{}", hash.to_nix32()),
        format!("text:sha1:{}", "0".repeat(32)),
        format!("fixed:r:sha256:{}é", "0".repeat(50)),
    ] {
        let err = parse(&with_extra(&[&format!("CA: {value}")])).unwrap_err();
        assert!(
            matches!(&err, Error::BadContentAddress { line: 9, key, .. } if key == "CA"),
            "{value}: {err:?}"
        );
    }
}

#[test]
fn missing_colon_and_newline() {
    let text = format!("{}garbage", join(&lines()));
    assert_eq!(parse(&text).unwrap_err(), Error::MissingColon { line: 9 });
    let text = join(&lines());
    let text = text.strip_suffix('\n').unwrap();
    assert_eq!(
        parse(text).unwrap_err(),
        Error::MissingNewline {
            line: 8,
            key: "References".into()
        }
    );
    // "Key:" right at the end: the value would start past the end.
    let text = format!("{}Foo:", join(&lines()));
    assert!(matches!(
        parse(&text).unwrap_err(),
        Error::MissingNewline { line: 9, .. }
    ));
    let text = format!("{}Foo:\n", join(&lines()));
    assert!(matches!(
        parse(&text).unwrap_err(),
        Error::MissingNewline { line: 9, .. }
    ));
}

#[test]
fn scanner_quirks_match_nix() {
    // A line without ':' merges into the next key, which is then unknown.
    let mut l = lines();
    l.insert(2, "no colon here".into());
    l.insert(3, "Compression: xz".into());
    let info = parse(&join(&l)).unwrap();
    assert_eq!(info.compression, "none");
    // "Key:" followed directly by LF: the LF is the skipped byte, so the next line is
    // the value.
    let mut l = lines();
    l.insert(0, "System:".into());
    l.insert(1, "x86_64-linux".into());
    let info = parse(&join(&l)).unwrap();
    assert_eq!(info.system.as_deref(), Some("x86_64-linux"));
    // The byte after ':' is skipped whatever it is.
    let info = parse(&with_line(2, "Compression:\txz")).unwrap();
    assert_eq!(info.compression, "xz");
    // Line numbers keep counting across such records.
    let mut l = lines();
    l.insert(0, "System:".into());
    l.insert(1, "xyz".into());
    l[7] = "NarSize: bad".into();
    assert!(matches!(
        parse(&join(&l)).unwrap_err(),
        Error::BadNumber { line: 8, .. }
    ));
}

#[test]
fn value_starting_inside_a_character() {
    let err = parse(&with_line(1, "URL:é")).unwrap_err();
    assert_eq!(
        err,
        Error::NotUtf8 {
            line: 2,
            key: "URL".into()
        }
    );
    // For an unknown key the value is never looked at.
    assert!(parse(&with_extra(&["Whatever:é"])).is_ok());
}

#[test]
fn system_sigs_and_field_order() {
    let text = with_extra(&[
        "Sig: zz:b",
        "CA: fixed:sha1:iwjz551f0000000000000000000000a0",
        &format!("Deriver: {REF_B}"),
        "Sig: aa:a",
        "System: x86_64-linux",
    ]);
    let info = parse(&text).unwrap();
    let printed = print(&info);
    let expected = with_extra(&[
        &format!("Deriver: {REF_B}"),
        "System: x86_64-linux",
        "Sig: aa:a",
        "Sig: zz:b",
        "CA: fixed:sha1:iwjz551f0000000000000000000000a0",
    ]);
    assert_eq!(printed, expected);
    // An empty System is "not set" and is not written.
    let info = parse(&with_extra(&["System: "])).unwrap();
    assert_eq!(info.system, None);
}

#[test]
fn later_single_valued_fields_win() {
    let info = parse(&with_extra(&["URL: nar/y.nar", "NarSize: 5"])).unwrap();
    assert_eq!(info.url, "nar/y.nar");
    assert_eq!(info.nar_size, 5);
}

#[test]
fn fingerprint_refuses_zero_nar_size() {
    let mut info = parse(&join(&lines())).unwrap();
    info.nar_size = 0;
    let err = info.fingerprint(&StoreDir::default()).unwrap_err();
    assert_eq!(err, Error::UnknownNarSize { path: PATH.into() });
}

#[test]
fn compression_extensions() {
    use kiln_narinfo::compression_extension as ext;
    assert_eq!(ext("none"), Some(""));
    assert_eq!(ext("xz"), Some(".xz"));
    assert_eq!(ext("bzip2"), Some(".bz2"));
    assert_eq!(ext("zstd"), Some(".zst"));
    assert_eq!(ext("lzip"), Some(".lzip"));
    assert_eq!(ext("lz4"), Some(".lz4"));
    assert_eq!(ext("br"), Some(".br"));
    assert_eq!(ext("gzip"), None);
}

#[test]
fn store_path_is_canonicalised_like_nix() {
    for variant in [
        format!("{PATH}/"),
        PATH.replace("/nix/store/", "//nix/./store//"),
        PATH.replace("/nix/store/", "/nix/store/foo/../"),
    ] {
        let info = parse(&with_line(0, &format!("StorePath: {variant}"))).unwrap();
        assert_eq!(print(&info), join(&lines()), "{variant}");
    }
    for bad in [
        "",
        "nix/store/rnsh685m80sc5ikbvk76sy5b0q80xpff-tree",
        "/",
        "/nix/store",
    ] {
        let err = parse(&with_line(0, &format!("StorePath: {bad}"))).unwrap_err();
        assert!(
            matches!(err, Error::BadStorePath { line: 1, .. }),
            "{bad}: {err:?}"
        );
    }
}
