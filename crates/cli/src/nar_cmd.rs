//! `kiln nar dump|restore|ls|cat`: thin glue over `kiln-nar` that adds context naming
//! the file or directory involved and formats listings.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{bail, Context};
use kiln_nar::{member_path, EntryKind, ListEntry};

/// `kiln nar dump PATH`: the NAR of PATH on stdout, byte-identical to `nix-store --dump`.
pub fn dump(path: &Path) -> anyhow::Result<()> {
    let mut out = stdout()?;
    kiln_nar::dump_path(path, &mut out).with_context(|| format!("dumping '{}'", path.display()))?;
    out.flush().context("writing to stdout")
}

/// `kiln nar restore DIR`: unpack the NAR on stdin into DIR, which must not exist.
pub fn restore(dir: &Path) -> anyhow::Result<()> {
    kiln_nar::restore(io::stdin().lock(), dir)
        .with_context(|| format!("restoring a NAR from stdin into '{}'", dir.display()))
}

/// `kiln nar ls NARFILE [PATH] [-R]`: one line per entry, like `nix nar ls -l`, with
/// paths relative to the archive root (`./a/b`; `.` is the root itself). A directory
/// member lists its entries (all descendants with `recursive`); anything else lists itself.
pub fn ls(nar_file: &Path, member: Option<&str>, recursive: bool) -> anyhow::Result<()> {
    let file = open(nar_file)?;
    let entries =
        kiln_nar::list(file).with_context(|| format!("reading NAR '{}'", nar_file.display()))?;
    let wanted = member_path(member.unwrap_or("").as_bytes());
    let Some(found) = entries.iter().find(|e| e.path == wanted) else {
        bail!(
            "path '/{}' does not exist in NAR '{}'",
            String::from_utf8_lossy(&wanted),
            nar_file.display()
        );
    };
    let mut out = BufWriter::new(stdout()?);
    if found.kind == EntryKind::Directory {
        for entry in entries
            .iter()
            .filter(|e| is_below(&e.path, &wanted, recursive))
        {
            write_line(&mut out, entry)?;
        }
    } else {
        write_line(&mut out, found)?;
    }
    out.flush().context("writing to stdout")
}

/// `kiln nar cat NARFILE PATH`: a regular file member's contents on stdout.
pub fn cat(nar_file: &Path, member: &str) -> anyhow::Result<()> {
    let file = open(nar_file)?;
    let mut out = stdout()?;
    kiln_nar::cat(file, member, &mut out)
        .with_context(|| format!("reading NAR '{}'", nar_file.display()))?;
    out.flush().context("writing to stdout")
}

fn open(nar_file: &Path) -> anyhow::Result<File> {
    File::open(nar_file).with_context(|| format!("opening NAR '{}'", nar_file.display()))
}

/// Standard output as a plain file. `io::Stdout` is line-buffered, which would scan
/// binary NAR data for newlines and split writes; the NAR writer batches small tokens
/// itself, so no further buffering is needed for archives.
fn stdout() -> anyhow::Result<File> {
    let fd = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stdout")?;
    Ok(File::from(fd))
}

/// Whether `path` is listed under directory `dir`: a child, or with `recursive` any
/// descendant.
fn is_below(path: &[u8], dir: &[u8], recursive: bool) -> bool {
    let rest = if dir.is_empty() {
        path
    } else {
        match path.strip_prefix(dir).and_then(|r| r.strip_prefix(b"/")) {
            Some(rest) => rest,
            None => return false,
        }
    };
    !rest.is_empty() && (recursive || !rest.contains(&b'/'))
}

/// `nix nar ls -l` style: mode string, size in a 20-wide column, path, symlink target.
/// Names are written as raw bytes, as Nix does.
fn write_line(out: &mut impl Write, entry: &ListEntry) -> anyhow::Result<()> {
    let (mode, size) = match &entry.kind {
        EntryKind::Directory => ("dr-xr-xr-x", 0),
        EntryKind::Regular {
            executable: true,
            size,
            ..
        } => ("-r-xr-xr-x", *size),
        EntryKind::Regular { size, .. } => ("-r--r--r--", *size),
        EntryKind::Symlink { .. } => ("lrwxrwxrwx", 0),
    };
    let write = |out: &mut dyn Write| -> io::Result<()> {
        write!(out, "{mode} {size:20} .")?;
        if !entry.path.is_empty() {
            out.write_all(b"/")?;
            out.write_all(&entry.path)?;
        }
        if let EntryKind::Symlink { target } = &entry.kind {
            out.write_all(b" -> ")?;
            out.write_all(target)?;
        }
        out.write_all(b"\n")
    };
    write(out).context("writing to stdout")
}
