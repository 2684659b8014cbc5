//! Store-path and hash parsers on arbitrary text: never panic, and whatever parses
//! prints back to the same text.
#![no_main]

use kiln_hash::{Algorithm, Hash};
use kiln_store_path::{ContentAddress, StoreDir};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let store = StoreDir::default();
    if let Ok(path) = store.parse(text) {
        assert_eq!(store.display(&path), text);
    }
    if let Ok((path, rest)) = store.parse_with_subpath(text) {
        assert_eq!(format!("{}{}", store.display(&path), rest), text);
    }
    if let Ok(ca) = text.parse::<ContentAddress>() {
        let again: ContentAddress = ca.to_string().parse().expect("printed CA parses");
        assert_eq!(again, ca);
    }
    for expected in [None, Some(Algorithm::Sha256), Some(Algorithm::Md5)] {
        if let Ok(hash) = Hash::parse(text, expected) {
            assert_eq!(Hash::parse(&hash.to_sri(), None).unwrap(), hash);
        }
    }
});
