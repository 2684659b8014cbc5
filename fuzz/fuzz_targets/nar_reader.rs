//! The strict NAR reader on arbitrary bytes: never panics, every rejection carries an
//! offset inside the input, and whatever it accepts re-serialises to the same bytes
//! (the canonical form is the only form it accepts).
#![no_main]

use kiln_nar::{copy_nar, NarReader, NarWriter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut reader = NarReader::new(data);
    let mut out = Vec::new();
    let mut writer = NarWriter::new(&mut out);
    match copy_nar(&mut reader, &mut writer).and_then(|()| reader.finish()) {
        Ok(()) => {
            writer.finish().expect("a copied NAR finishes");
            assert_eq!(out, data, "accepted NAR is not canonical");
        }
        Err(err) => {
            if let Some(offset) = err.offset() {
                assert!(offset <= data.len() as u64, "offset {offset} past input {}", data.len());
            }
        }
    }
    let _ = kiln_nar::list(data);
});
