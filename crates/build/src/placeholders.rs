//! Output placeholders (`builtins.placeholder "out"`) replaced by the outputs' real paths
//! in what the builder is given, as Nix 2.8's `inputRewrites` does.
//!
//! Nix applies the rewrite to each `NAME=VALUE` of the environment (so to names as well as
//! values), to every argument, to the `passAsFile` files and to `.attrs.json` and
//! `.attrs.sh`. It does not apply it to the builder path itself: a builder given as a
//! placeholder fails to execute under Nix, and so it does here.

use std::borrow::Cow;
use std::collections::BTreeMap;

use kiln_store_path::output_placeholder;
use memchr::memmem;

/// Placeholder → output path, for every output of one derivation.
pub struct Rewrites {
    /// Sorted by placeholder, the order in which Nix applies them.
    pairs: Vec<(memmem::Finder<'static>, Vec<u8>)>,
}

impl Rewrites {
    /// `outputs` maps output names to the paths the builder must write.
    pub fn for_outputs(outputs: &BTreeMap<String, String>) -> Rewrites {
        let sorted: BTreeMap<String, &String> = outputs
            .iter()
            .map(|(name, path)| (output_placeholder(name), path))
            .collect();
        Rewrites {
            pairs: sorted
                .into_iter()
                .map(|(from, to)| {
                    (
                        memmem::Finder::new(from.as_bytes()).into_owned(),
                        to.as_bytes().to_vec(),
                    )
                })
                .collect(),
        }
    }

    /// `text` with every placeholder replaced; borrowed when there is none, which is
    /// nearly always.
    pub fn apply<'t>(&self, text: &'t [u8]) -> Cow<'t, [u8]> {
        let mut current = Cow::Borrowed(text);
        for (from, to) in &self.pairs {
            if from.find(&current).is_none() {
                continue;
            }
            let mut out = Vec::with_capacity(current.len());
            let mut rest: &[u8] = &current;
            while let Some(at) = from.find(rest) {
                out.extend_from_slice(&rest[..at]);
                out.extend_from_slice(to);
                rest = &rest[at + from.needle().len()..];
            }
            out.extend_from_slice(rest);
            current = Cow::Owned(out);
        }
        current
    }

    pub fn apply_owned(&self, text: Vec<u8>) -> Vec<u8> {
        match self.apply(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(rewritten) => rewritten,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `builtins.placeholder "out"` and `"dev"` as Nix 2.8 prints them.
    const OUT: &str = "/1rz4g4znpzjwh1xymhjpm42vipw92pr73vdgl6xs1hycac8kf2n9";
    const DEV: &str = "/02qcpld1y6xhs5gz9bchpxaw0xdhmsp5dv88lh25r2ss44kh8dxz";

    fn rewrites() -> Rewrites {
        Rewrites::for_outputs(&BTreeMap::from([
            ("out".to_string(), "/nix/store/aaa-x".to_string()),
            ("dev".to_string(), "/nix/store/bbb-x-dev".to_string()),
        ]))
    }

    #[test]
    fn every_occurrence_of_every_output_is_replaced() {
        let text = format!("a{OUT}/bin:{DEV}{OUT}z");
        assert_eq!(
            rewrites().apply(text.as_bytes()).as_ref(),
            b"a/nix/store/aaa-x/bin:/nix/store/bbb-x-dev/nix/store/aaa-xz"
        );
    }

    #[test]
    fn text_without_placeholders_is_not_copied() {
        assert!(matches!(
            rewrites().apply(b"/nix/store/aaa-x"),
            Cow::Borrowed(_)
        ));
        // A prefix of a placeholder is not one.
        assert_eq!(
            rewrites().apply(&OUT.as_bytes()[..40]).as_ref(),
            &OUT.as_bytes()[..40]
        );
    }
}
