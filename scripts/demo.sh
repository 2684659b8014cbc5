#!/usr/bin/env bash
# kiln's main job on an example shipped in the repo: build two derivations (one
# depending on the other) in kiln's sandbox, in the default store, then show what was
# built. Only kiln is used: the derivations are added from JSON (examples/hello), with a
# static busybox as the builder. Also shows the formats layer on examples/tree.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/prereqs.sh
cargo build --release -q -p kiln
kiln=target/release/kiln
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== add a static busybox to the store as the builder"
mkdir "$work/busybox"
cp "$(command -v busybox)" "$work/busybox/sh"
busybox=$("$kiln" store add-path --name busybox "$work/busybox")
echo "$busybox"

echo "== add the derivations (output paths computed as Nix computes them)"
sed "s|@busybox@|$busybox|g" examples/hello/greeting.json > "$work/greeting.json"
greeting=$("$kiln" derivation add < "$work/greeting.json")
echo "$greeting"
greeting_out=$("$kiln" derivation show "$greeting" | sed -n 's/.*"path": "\(.*\)".*/\1/p' | head -n 1)
sed -e "s|@busybox@|$busybox|g" -e "s|@greeting@|$greeting|g" -e "s|@greeting-out@|$greeting_out|g" \
  examples/hello/hello.json > "$work/hello.json"
hello=$("$kiln" derivation add < "$work/hello.json")
echo "$hello"

echo "== build (sandboxed, as Nix would)"
out=$("$kiln" build -L --out-link "$work/result" "$hello")
echo "$out"
# With the default store at /nix (root), the output is runnable in place.
"$work/result/bin/hello" 2>/dev/null || echo "(store is not at /nix; $out lives under kiln's store root)"

echo "== what was built"
"$kiln" path-info -r -S "$out"

echo "== formats: NAR hash of examples/tree (what nix-hash --type sha256 --base32 prints)"
"$kiln" hash path examples/tree
