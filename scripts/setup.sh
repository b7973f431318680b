#!/usr/bin/env bash
# Installs everything the build and the tests need, idempotently. Safe to run any number of times.
# Versions are pinned here and in package.json; wasm-bindgen must equal the one in Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
: "${WASM_BINDGEN_VERSION:?wasm-bindgen not found in Cargo.lock}"
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"

have_version() { # binary expected-version
  [ -x "$CARGO_BIN/$1" ] && "$CARGO_BIN/$1" --version 2>/dev/null | grep -q "$2"
}

if ! rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  echo "setup: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
if ! have_version wasm-bindgen "$WASM_BINDGEN_VERSION"; then
  echo "setup: installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # Not --locked: its lock file wants a webpki-roots release the registry mirror lacks.
  cargo install wasm-bindgen-cli --version "=$WASM_BINDGEN_VERSION" --force
fi
if [ ! -x node_modules/.bin/wrangler ] || [ ! -x node_modules/.bin/wasm-opt ] || [ ! -d node_modules/playwright-core ] \
  || [ package.json -nt node_modules/.setup-stamp ] \
  || ! node_modules/.bin/node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 22 ? 0 : 1)' 2>/dev/null; then
  echo "setup: installing npm packages"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
  # The Node 22 that the Makefile puts first on the PATH (wrangler and miniflare need >= 22.12).
  node_modules/.bin/node --version >/dev/null 2>&1 \
    || { echo "setup: node_modules/.bin/node (Node 22, npm package node) does not run; npm install node@22 by hand" >&2; exit 1; }
  touch node_modules/.setup-stamp
fi
# With --browser (`make test-browser`; not for wrangler's [build] nor `make dev`): Chromium for the
# operator console's browser test (tests/browser/, driven by playwright-core): Debian's package
# (with a CJK font, so that the screenshots are readable), installed when missing and when we may
# (root, or sudo without a password). Elsewhere set CHROME_PATH to a Chromium or Chrome binary;
# without either the browser test fails saying so.
if [ "${1:-}" = --browser ] && [ -z "${CHROME_PATH:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then as_root=(); elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then as_root=(sudo -n); else as_root=(none); fi
  if [ "${as_root[0]:-}" != none ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing chromium (apt) for the browser test"
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null
  else
    echo "setup: chromium is missing and cannot be installed here: install Debian's chromium package, or set CHROME_PATH, for the browser test" >&2
  fi
fi
