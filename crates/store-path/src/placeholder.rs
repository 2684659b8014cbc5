//! Placeholder strings that stand for paths not known at evaluation time.

use kiln_hash::{nix32, Hash};

use crate::StorePath;

/// The name of output `output` of a derivation named `drv_name`: `drv_name` for `out`,
/// `drv_name-output` otherwise.
pub fn output_path_name(drv_name: &str, output: &str) -> String {
    if output == "out" {
        drv_name.to_string()
    } else {
        format!("{drv_name}-{output}")
    }
}

/// `builtins.placeholder output`: `/` + nix32(sha256("nix-output:<output>")).
pub fn output_placeholder(output: &str) -> String {
    format!(
        "/{}",
        nix32::encode(Hash::sha256(format!("nix-output:{output}")).as_bytes())
    )
}

/// Stands for output `output` of the content-addressed input derivation `drv_path`
/// until that input is built: `/` + nix32(sha256("nix-upstream-output:<drv hash
/// part>:<output path name>")).
pub fn downstream_placeholder(drv_path: &StorePath, output: &str) -> String {
    let name = output_path_name(drv_path.name_without_drv_ext(), output);
    let clear = format!("nix-upstream-output:{}:{}", drv_path.hash_part(), name);
    format!("/{}", nix32::encode(Hash::sha256(clear).as_bytes()))
}
