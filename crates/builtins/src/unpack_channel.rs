//! `builtin:unpack-channel`: unpacks the channel tarball `src` into `out` and renames
//! its single top-level entry to `channelName`. Compression is recognised by its
//! magic bytes (gzip, bzip2, xz or none), as libarchive does for Nix.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::env::Env;
use crate::error::Error;

pub fn unpack_channel(env: &Env<'_>) -> Result<(), Error> {
    let out = Path::new(env.require_str("out")?);
    let channel_name = env.require_str("channelName")?;
    let src = env.require_str("src")?;
    fs::create_dir_all(out).map_err(|e| Error::io("creating directory", out, e))?;

    let file = fs::File::open(src).map_err(|e| Error::io("opening file", src, e))?;
    let mut input = BufReader::new(file);
    let magic = input
        .fill_buf()
        .map_err(|e| Error::io("reading file", src, e))?
        .to_vec();
    let body: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(input))
    } else if magic.starts_with(b"BZh") {
        Box::new(bzip2::bufread::MultiBzDecoder::new(input))
    } else if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input))
    } else {
        Box::new(input)
    };
    let mut archive = tar::Archive::new(body);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.unpack(out).map_err(|e| Error::Tarball {
        src: src.to_string(),
        reason: e.to_string(),
    })?;

    let mut entries = Vec::new();
    for entry in fs::read_dir(out).map_err(|e| Error::io("opening directory", out, e))? {
        entries.push(
            entry
                .map_err(|e| Error::io("reading directory", out, e))?
                .file_name(),
        );
    }
    let [only] = entries.as_slice() else {
        return Err(Error::ChannelNotOneFile(src.to_string()));
    };
    let from = out.join(only);
    let to = out.join(channel_name);
    fs::rename(&from, &to).map_err(|e| Error::io("renaming channel directory", from, e))
}
