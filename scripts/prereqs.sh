#!/usr/bin/env bash
# Installs what kiln's tests and demo need on Debian: Nix 2.8 (the oracle for
# differential tests) and a static busybox (a builder that needs no nixpkgs).
set -euo pipefail

missing=()
command -v nix-store >/dev/null 2>&1 || missing+=(nix-bin)
[ -x /bin/busybox ] || command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "kiln: missing ${missing[*]}; run this script as root or install them with apt-get" >&2
    exit 1
  fi
  echo "kiln: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "kiln: cargo not found; install a stable Rust toolchain (rustup) first" >&2
  exit 1
fi
