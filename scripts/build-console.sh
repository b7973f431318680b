#!/usr/bin/env bash
# Builds the operator console (console/) into build/assets/, the directory wrangler.toml's [assets]
# serves as Workers Static Assets: build/assets/console/{index.html,app.js,style.css,favicon.svg} and the
# response headers in build/assets/_headers. esbuild bundles the ES modules into one minified
# module and minifies the stylesheet. Only local tools; run by scripts/build.sh after the worker.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/assets
rm -rf "$out"
mkdir -p "$out/console"
node_modules/.bin/esbuild console/app.js --bundle --format=esm --minify --target=es2022 \
  --legal-comments=none --charset=utf8 --log-level=warning --outfile="$out/console/app.js"
node_modules/.bin/esbuild console/style.css --minify --log-level=warning --outfile="$out/console/style.css"
cp console/index.html console/favicon.svg "$out/console/"
cp console/_headers "$out/_headers"
gz=$(cat "$out"/console/* | gzip -9 | wc -c)
echo "build: $out/console $(cat "$out"/console/* | wc -c) B ($gz B gzip)"
