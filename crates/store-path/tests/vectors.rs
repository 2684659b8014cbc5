//! Golden vectors, all observed from Nix 2.8 (`nix-store --add`, `--add-fixed`, `nix-instantiate`).

use kiln_hash::{Algorithm, Hash};
use kiln_store_path::{
    downstream_placeholder, output_placeholder, scan_for_references, validate_name, ContentAddress,
    Error, FileIngestionMethod, ReferenceScanner, StoreDir, StorePath,
};

fn store() -> StoreDir {
    StoreDir::default()
}

fn p(s: &str) -> StorePath {
    store().parse(s).unwrap()
}

#[test]
fn text_path_without_references() {
    let path = store()
        .make_text_path("hello.txt", &Hash::sha256("hello world"), [])
        .unwrap();
    assert_eq!(
        store().display(&path),
        "/nix/store/m6wswa7yn6x5gi6gdq7x1fqlwmlhfja9-hello.txt"
    );
    let gnu = StoreDir::new("/gnu/store").unwrap();
    let path = gnu
        .make_text_path("hello.txt", &Hash::sha256("hello world"), [])
        .unwrap();
    assert_eq!(
        gnu.display(&path),
        "/gnu/store/vls5smd41fdfscmr2ybzdgmyxgknwknf-hello.txt"
    );
}

#[test]
fn text_path_with_sorted_references() {
    let a = store().make_text_path("a", &Hash::sha256("A"), []).unwrap();
    assert_eq!(a.base_name(), "draf2pm7skqzj8g3kv0bamg214p6sd70-a");
    let contents = format!("ref {}", store().display(&a));
    let b = store()
        .make_text_path("b", &Hash::sha256(&contents), [&a])
        .unwrap();
    assert_eq!(b.base_name(), "i93i2hjzgf30qy874y8ib793jbfcncmq-b");

    let z = store().make_text_path("z", &Hash::sha256("Z"), []).unwrap();
    let contents = format!("ref {} {}", store().display(&z), store().display(&a));
    // Given in order of appearance; the fingerprint must sort them.
    let b2 = store()
        .make_text_path("b", &Hash::sha256(&contents), [&z, &a])
        .unwrap();
    assert_eq!(b2.base_name(), "8glqz0p57a8prf36aaq4q3j99n9xjhqx-b");
}

#[test]
fn source_path_of_tree_fixture() {
    let nar = Hash::parse(
        "5fd7b1ceed90d1f1b332d7713a539cff3cb533dbefa0503ef2c61afdb1101858",
        Some(Algorithm::Sha256),
    )
    .unwrap();
    assert_eq!(
        store().make_source_path("tree", &nar).unwrap().base_name(),
        "rnsh685m80sc5ikbvk76sy5b0q80xpff-tree"
    );
    // Recursive sha256 fixed outputs coincide with source paths.
    assert_eq!(
        store()
            .make_fixed_output_path(FileIngestionMethod::Recursive, &nar, "tree", [], false)
            .unwrap()
            .base_name(),
        "rnsh685m80sc5ikbvk76sy5b0q80xpff-tree"
    );
}

#[test]
fn eight_fixed_output_paths_of_hi_txt() {
    let contents = b"hi\n";
    // NAR of a regular non-executable file: see formats.md §3.7.
    let mut nar = Vec::new();
    for token in [
        &b"nix-archive-1"[..],
        b"(",
        b"type",
        b"regular",
        b"contents",
        contents,
        b")",
    ] {
        nar.extend_from_slice(&(token.len() as u64).to_le_bytes());
        nar.extend_from_slice(token);
        nar.resize(nar.len().div_ceil(8) * 8, 0);
    }
    let cases = [
        (
            FileIngestionMethod::Flat,
            Algorithm::Md5,
            "pvrdj3p4d70x1gq0i3qw3nlda57h84b0",
        ),
        (
            FileIngestionMethod::Flat,
            Algorithm::Sha1,
            "cwqi3hg14ghxp8cbkczibv2y439hdg7x",
        ),
        (
            FileIngestionMethod::Flat,
            Algorithm::Sha256,
            "a1qbm6bia1qj42ganmyz01knaai6d59p",
        ),
        (
            FileIngestionMethod::Flat,
            Algorithm::Sha512,
            "x38npfhps8vhqccp7cc8j51m6cf5xsrj",
        ),
        (
            FileIngestionMethod::Recursive,
            Algorithm::Md5,
            "4r6yjz2445ih581rs3a8ji2q6hpm6lkb",
        ),
        (
            FileIngestionMethod::Recursive,
            Algorithm::Sha1,
            "pwlqzbm2saz3f2icq0f9dv3d9l143ccb",
        ),
        (
            FileIngestionMethod::Recursive,
            Algorithm::Sha256,
            "qs2vcw1sd6lzsvgvq6gggnw1v31qrm28",
        ),
        (
            FileIngestionMethod::Recursive,
            Algorithm::Sha512,
            "0gn274i3qmyc25v5g1ifv9fyz75krym7",
        ),
    ];
    for (method, algo, hash_part) in cases {
        let hash = match method {
            FileIngestionMethod::Flat => Hash::digest(algo, contents),
            FileIngestionMethod::Recursive => Hash::digest(algo, &nar),
        };
        let path = store()
            .make_fixed_output_path(method, &hash, "hi.txt", [], false)
            .unwrap();
        assert_eq!(path.hash_part(), hash_part, "{method:?} {algo}");
        let ca = ContentAddress::Fixed(method, hash);
        assert_eq!(
            store()
                .make_content_addressed_path(&ca, "hi.txt", [], false)
                .unwrap(),
            path
        );
    }
}

#[test]
fn source_paths_with_references_and_self() {
    let caplain = p("/nix/store/xbkbsyqdpl8h08gxsmcgxd9brxxdi2cw-caplain");
    let h = Hash::parse(
        "245e4ee77d1891031ec880cc2108394030dcb0ab285b4446fb2e4c61f939c2ac",
        Some(Algorithm::Sha256),
    )
    .unwrap();
    assert_eq!(
        store()
            .make_fixed_output_path(
                FileIngestionMethod::Recursive,
                &h,
                "carefdep",
                [&caplain],
                false
            )
            .unwrap()
            .base_name(),
        "vdw0yy6zabsk85hd1bc01jpl022zcbih-carefdep"
    );
    let h = Hash::parse(
        "6af167b08ce4c28edc786f82873d481b126a52c716c7ce71b7bfed05ab8cb444",
        Some(Algorithm::Sha256),
    )
    .unwrap();
    assert_eq!(
        store()
            .make_fixed_output_path(FileIngestionMethod::Recursive, &h, "caself", [], true)
            .unwrap()
            .base_name(),
        "yxz3b8xbcbpff1g14v88rrm1p270skl3-caself"
    );
}

#[test]
fn fixed_output_with_references_is_refused() {
    let a = p("/nix/store/draf2pm7skqzj8g3kv0bamg214p6sd70-a");
    let err = store()
        .make_fixed_output_path(
            FileIngestionMethod::Flat,
            &Hash::sha256("x"),
            "x",
            [&a],
            false,
        )
        .unwrap_err();
    assert!(matches!(err, Error::BadContentAddress(..)));
}

#[test]
fn placeholders_spec_2_6() {
    assert_eq!(
        output_placeholder("out"),
        "/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9"
    );
    assert_eq!(
        output_placeholder("dev"),
        "/02qcpld1y6xhs5gz9bchpxaw0xdhmsp5dv88lh25r2ss44kh8dxz"
    );
    assert_eq!(
        output_placeholder("bin"),
        "/04f3da1kmbr67m3gzxikmsl4vjz5zf777sv6m14ahv22r65aac9m"
    );
    let ca = p("/nix/store/cjx8cf94nqfhsz69f302f5qxdx75id6w-ca.drv");
    assert_eq!(
        downstream_placeholder(&ca, "dev"),
        "/1lzfc6icnisv76gq2lmkdyk3y7rjs889qqp8wd16x7y99f5zh7dm"
    );
    assert_eq!(
        downstream_placeholder(&ca, "out"),
        "/1bkfxw5hx2ccxphcqx97zmv9a339rfl8zlwb6n974qdd95gskc2s"
    );
}

#[test]
fn output_path_of_simple_spec_5_9() {
    let d = Hash::parse(
        "595072af4f49a7e6e3c199450fd82e69e589fd048130ced35ea820a92858d271",
        Some(Algorithm::Sha256),
    )
    .unwrap();
    assert_eq!(
        store()
            .make_output_path("out", &d, "simple")
            .unwrap()
            .base_name(),
        "i5xvchlm36jash0k9ndh3vya563ls965-simple"
    );
}

#[test]
fn name_rules_spec_2_2() {
    assert!(validate_name(&"a".repeat(211)).is_ok());
    assert!(matches!(
        validate_name(&"a".repeat(212)),
        Err(Error::NameTooLong { .. })
    ));
    assert!(matches!(validate_name(""), Err(Error::EmptyName(_))));
    for ok in [".", "..", ".foo", "..foo", "-foo", "a+b-c.d_e?f=g", "Zz09"] {
        assert!(validate_name(ok).is_ok(), "{ok}");
    }
    for (bad, ch) in [
        ("a b", ' '),
        ("a@b", '@'),
        ("a/b", '/'),
        ("é", 'é'),
        ("a:b", ':'),
    ] {
        match validate_name(bad) {
            Err(Error::InvalidNameChar { ch: got, .. }) => assert_eq!(got, ch),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn parsing_full_paths_spec_2_3() {
    let s = store();
    let path = s
        .parse("/nix/store/m6wswa7yn6x5gi6gdq7x1fqlwmlhfja9-hello.txt")
        .unwrap();
    assert_eq!(path.hash_part(), "m6wswa7yn6x5gi6gdq7x1fqlwmlhfja9");
    assert_eq!(path.name(), "hello.txt");
    assert!(matches!(
        s.parse("/nix/other/m6wswa7yn6x5gi6gdq7x1fqlwmlhfja9-hello.txt"),
        Err(Error::NotInStore(..))
    ));
    // 'e', 'o', 'u', 't' are not nix32 digits.
    assert!(s
        .parse("/nix/store/e6wswa7yn6x5gi6gdq7x1fqlwmlhfja9-hello.txt")
        .is_err());
    assert!(s
        .parse("/nix/store/m6wswa7yn6x5gi6gdq7x1fqlwmlhfja9Xhello.txt")
        .is_err());
    assert!(s
        .parse("/nix/store/m6wswa7yn6x5gi6gdq7x1fqlwmlhfja9-")
        .is_err());
    assert!(s.parse("/nix/store/short-x").is_err());
    let (path, rest) = s
        .parse_with_subpath("/nix/store/m6wswa7yn6x5gi6gdq7x1fqlwmlhfja9-hello.txt/bin/x")
        .unwrap();
    assert_eq!(path.name(), "hello.txt");
    assert_eq!(rest, "/bin/x");
    assert!(s
        .parse("/nix/store/m6wswa7yn6x5gi6gdq7x1fqlwmlhfja9-hello.txt/bin")
        .is_err());
}

#[test]
fn content_address_strings_spec_2_7() {
    for s in [
        "text:sha256:0cfzzvyc0byk59pffqr7k9f02xmgbpxn7i4ssszsl69zzvd50qzj",
        "fixed:r:sha256:0n0q22qzs6n6y8z5187gvcrvag7zki9klwfp6arz3lchxp7b3msz",
        "fixed:sha1:iwjz551fyw0cxcjgf4l6c879zabd6wpm",
    ] {
        let ca: ContentAddress = s.parse().unwrap();
        assert_eq!(ca.to_string(), s);
    }
    assert!("text:sha1:iwjz551fyw0cxcjgf4l6c879zabd6wpm"
        .parse::<ContentAddress>()
        .is_err());
    assert!("nar:sha256:x".parse::<ContentAddress>().is_err());
    // 2.8 refuses SRI hashes in content addresses.
    assert!(
        "fixed:r:sha256-X9exzu2Q0fGzMtdxOlOc/zy1M9vvoFA+8sYa/bEQGFg="
            .parse::<ContentAddress>()
            .is_err()
    );
}

#[test]
fn reference_scanning_finds_split_and_ignores_unknown() {
    let a = p("/nix/store/draf2pm7skqzj8g3kv0bamg214p6sd70-a");
    let b = p("/nix/store/i93i2hjzgf30qy874y8ib793jbfcncmq-b");
    let z = p("/nix/store/8glqz0p57a8prf36aaq4q3j99n9xjhqx-b");
    let text = format!("xx{}yy/nix/store/{}", a.hash_part(), b.base_name());
    assert_eq!(
        scan_for_references(text.as_bytes(), [&a, &b, &z]),
        vec![a.clone(), b.clone()]
    );
    // Every split point of the stream must give the same answer.
    for split in 0..text.len() {
        let mut scanner = ReferenceScanner::new([&a, &b, &z]);
        scanner.update(&text.as_bytes()[..split]);
        scanner.update(&text.as_bytes()[split..]);
        assert_eq!(scanner.found(), vec![a.clone(), b.clone()], "split {split}");
    }
    // Byte-at-a-time writes.
    let mut scanner = ReferenceScanner::new([&a, &b, &z]);
    for byte in text.as_bytes() {
        scanner.update(std::slice::from_ref(byte));
    }
    assert_eq!(scanner.found(), vec![a, b]);
}
