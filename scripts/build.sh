#!/usr/bin/env bash
# Builds the Worker bundle into build/ (what wrangler.toml's `main` points to), using the locally
# installed wasm-bindgen, wasm-opt and esbuild so worker-build downloads nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
lock=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
cli=$("$CARGO_BIN/wasm-bindgen" --version | awk '{print $2}')
if [ "$lock" != "$cli" ]; then
  echo "build: wasm-bindgen CLI $cli does not match Cargo.lock's $lock; run scripts/setup.sh" >&2
  exit 1
fi
export WASM_BINDGEN_BIN="$CARGO_BIN/wasm-bindgen"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
exec "$CARGO_BIN/worker-build" --release "$@"
