//! Feeding a parsed NAR back into a writer. Since the reader only accepts canonical
//! archives, the copy is byte-identical to its input; this is how an untrusted NAR is
//! validated while it is passed on.

use std::io::{Read, Write};

use crate::error::Result;
use crate::reader::{Event, NarReader};
use crate::writer::NarWriter;

/// Copies every remaining node of `nar` into `out` (whose next node must be the root's).
pub fn copy_nar<R: Read, W: Write>(nar: &mut NarReader<R>, out: &mut NarWriter<W>) -> Result<()> {
    let mut buf = Vec::new();
    while let Some(event) = nar.next()? {
        let path = event.path();
        if !path.is_empty() && !matches!(event, Event::EndDirectory { .. }) {
            // Every node below the root is the node of an entry named by its last component.
            let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
            out.entry(name)?;
        }
        match event {
            Event::Directory { .. } => out.begin_directory()?,
            Event::EndDirectory { .. } => out.end_directory()?,
            Event::Symlink { target, .. } => out.symlink(target)?,
            Event::Regular {
                executable,
                size,
                mut contents,
                ..
            } => {
                out.begin_file(executable, size)?;
                if buf.is_empty() && size > 0 {
                    buf = vec![0; 256 * 1024];
                }
                loop {
                    let n = contents.read_chunk(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    out.write_contents(&buf[..n])?;
                }
                out.end_file()?;
            }
        }
    }
    Ok(())
}
