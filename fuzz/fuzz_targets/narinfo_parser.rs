//! The narinfo reader on arbitrary text: never panics, and whatever it accepts prints
//! and re-parses to the same record.
#![no_main]

use kiln_narinfo::NarInfo;
use kiln_store_path::StoreDir;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let store = StoreDir::default();
    if let Ok(info) = NarInfo::parse(&store, text) {
        let printed = info.to_text(&store);
        let again = NarInfo::parse(&store, &printed).expect("printed narinfo parses");
        assert_eq!(again, info);
    }
});
