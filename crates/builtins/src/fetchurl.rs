//! `builtin:fetchurl`: downloads `url` to `out`, as a flat file (optionally
//! executable) or, with `unpack = "1"`, as a NAR to restore (`.xz` URLs decompressed
//! first). The fixed-output hash is checked by the build afterwards, as in Nix.
//!
//! Not done (Nix 2.8 does both): `hashed-mirrors` (empty by default) and the host's
//! netrc file for credentials.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;

use crate::activity::Activity;
use crate::env::Env;
use crate::error::Error;
use crate::transfer;

pub fn fetchurl(env: &Env<'_>) -> Result<(), Error> {
    let out = env.require_str("out")?;
    let url = env.require_str("url")?;
    let unpack = env.get("unpack") == Some(b"1");
    // Nix consults it (for its hashed mirrors) before downloading anything, so a
    // derivation without it fails even though nothing else here uses it.
    env.require("outputHashMode")?;

    {
        let mut activity = Activity::download(url);
        let body = transfer::open(url, &mut activity)?;
        if unpack {
            let body: Box<dyn Read + '_> = if url.ends_with(".xz") {
                Box::new(liblzma::read::XzDecoder::new(body))
            } else {
                Box::new(body)
            };
            kiln_nar::restore(body, out.as_ref())?;
        } else {
            write_file(out, url, body)?;
        }
    }

    if env.get("executable") == Some(b"1") {
        std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o755)).map_err(|errno| {
            Error::NotExecutable {
                path: out.into(),
                errno,
            }
        })?;
    }
    Ok(())
}

fn write_file(out: &str, url: &str, mut body: impl Read) -> Result<(), Error> {
    let mut file = std::fs::File::create(out).map_err(|e| Error::io("opening file", out, e))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Download {
                    url: url.to_string(),
                    reason: e.to_string(),
                })
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| Error::io("writing to file", out, e))?;
    }
}
