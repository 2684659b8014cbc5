#!/usr/bin/env bash
# The whole test suite, as CI runs it: prerequisites, formatting, lints, tests.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/prereqs.sh

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test" >&2
cargo test --workspace --locked
