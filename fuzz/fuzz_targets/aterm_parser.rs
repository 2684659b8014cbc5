//! The `.drv` ATerm parser on arbitrary bytes: never panics, and whatever it accepts
//! prints and re-parses to the same derivation.
#![no_main]

use kiln_derivation::Derivation;
use kiln_store_path::StoreDir;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let store = StoreDir::default();
    if let Ok(drv) = Derivation::from_aterm(&store, data, "fuzz") {
        if let Ok(printed) = drv.to_aterm(&store) {
            let again = Derivation::from_aterm(&store, &printed, "fuzz").expect("printed drv parses");
            assert_eq!(again.to_aterm(&store).expect("prints"), printed);
        }
    }
});
