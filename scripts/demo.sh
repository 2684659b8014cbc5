#!/usr/bin/env bash
# kiln's main job on the examples shipped in the repo. For now (formats layer): hash a
# tree as Nix does, round-trip it through a NAR, and show a derivation as Nix 2.8 does.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p kiln
kiln=target/release/kiln
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== NAR hash of examples/tree (what nix-hash --type sha256 --base32 prints)"
"$kiln" hash path examples/tree

echo "== NAR of examples/tree: members"
"$kiln" nar dump examples/tree > "$work/tree.nar"
"$kiln" nar ls -R "$work/tree.nar"

echo "== restore it and hash the copy"
"$kiln" nar restore "$work/tree" < "$work/tree.nar"
"$kiln" hash path "$work/tree"

echo "== a derivation written by nix-instantiate, as kiln reads it"
"$kiln" --store "$PWD/examples/drv/store" derivation show \
  /nix/store/64mazh6gmc3gbvlinqw0xqv2ynj1vchl-dep.drv
