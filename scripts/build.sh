#!/usr/bin/env bash
# Builds the Worker into build/ (wrangler.toml's `main` is build/worker.mjs): the Rust core for
# wasm32, wasm-bindgen's glue (ES module target, with a reset function for a trapped instance),
# wasm-opt, then esbuild bundles our entry (src/glue/entry.mjs) with the glue; then the operator
# console into build/assets/ (scripts/build-console.sh). Only local tools: nothing is downloaded.
# WASM_OPT_FLAGS replaces -Oz (e.g. "-Oz -g" keeps function names for profiles); -ocimfs 100 and
# the feature flags are always passed.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_BIN="${CARGO_HOME:-$HOME/.cargo}/bin"
# BUILD_OUT: another directory for the worker alone (perf/first-code.mjs builds with names there).
out="${BUILD_OUT:-build}"
lock=$(grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p')
cli=$("$CARGO_BIN/wasm-bindgen" --version | awk '{print $2}')
if [ "$lock" != "$cli" ]; then
  echo "build: wasm-bindgen CLI $cli does not match Cargo.lock's $lock; run scripts/setup.sh" >&2
  exit 1
fi
cargo build --release --target wasm32-unknown-unknown --lib
stage=$(mktemp -d build.stage.XXXXXX)
trap 'rm -rf "$stage"' EXIT
"$CARGO_BIN/wasm-bindgen" --target module --out-dir "$stage" --out-name index --no-typescript \
  --experimental-reset-state-function "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/wechat_kf_worker.wasm"
# esbuild reads the wasm as an ordinary (compiled) module import.
sed -i 's/^import source wasmModule from/import wasmModule from/' "$stage/index.js"
# wasm-opt inlines every function that has one caller, whatever its size, undoing the core's
# #[inline(never)] on cold paths (safe-mode crypto, other message types and events, the health
# report, failed store reads, ...). V8 compiles a wasm function whole on its first call, so a cold
# path inlined into a hot function is compiled by every isolate's first request. -ocimfs 100
# leaves single-caller functions over 100 IR expressions where the compiler put them: a first plain push
# compiles 56 KB of code instead of 80 KB (V8's --trace-wasm-compilation-times), the wasm is
# 2.7 KB smaller gzipped, and CPU per request is unchanged (perf/cpu.mjs).
node_modules/.bin/wasm-opt ${WASM_OPT_FLAGS:--Oz} -ocimfs 100 --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-reference-types --enable-multivalue --enable-sign-ext --enable-mutable-globals \
  "$stage/index_bg.wasm" -o "$stage/index_bg.wasm"
cp src/glue/entry.mjs src/glue/wire.mjs "$stage/"
node_modules/.bin/esbuild "$stage/entry.mjs" --bundle --format=esm --minify --log-level=warning \
  --external:./index_bg.wasm --external:'cloudflare:*' --outfile="$stage/worker.mjs"
rm -rf "$out"
mkdir -p "$out"
mv "$stage/worker.mjs" "$stage/index_bg.wasm" "$out/"
echo "build: $out/worker.mjs $(wc -c < "$out/worker.mjs") B, $out/index_bg.wasm $(wc -c < "$out/index_bg.wasm") B"
# The operator console, served as static assets (wrangler.toml [assets]): build/assets/.
if [ "$out" = build ]; then
  bash scripts/build-console.sh
fi
