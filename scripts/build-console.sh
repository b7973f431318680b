#!/usr/bin/env bash
# Builds the operator console (console/) into build/assets/, the directory wrangler.toml's [assets]
# serves as Workers Static Assets: build/assets/console/{index.html,app.js,style.css,favicon.svg} and the
# response headers in build/assets/_headers. esbuild bundles the ES modules (with uPlot, the
# 数据 page's charts) into one minified module, and the stylesheet with uPlot's. Only local tools; run by scripts/build.sh after the worker.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/assets
rm -rf "$out"
mkdir -p "$out/console"
# uPlot's notice (MIT) stays with its code; esbuild drops other comments.
node_modules/.bin/esbuild console/app.js --bundle --format=esm --minify --target=es2022 \
  --banner:js="/*! uPlot $(node -p "require('uplot/package.json').version") (c) 2025 Leon Sorokin, MIT License: https://github.com/leeoniya/uPlot */" \
  --legal-comments=none --charset=utf8 --log-level=warning --outfile="$out/console/app.js"
node_modules/.bin/esbuild console/style.css --bundle --minify --log-level=warning --outfile="$out/console/style.css"
cp console/index.html console/favicon.svg "$out/console/"
cp console/_headers "$out/_headers"
gz=$(cat "$out"/console/* | gzip -9 | wc -c)
echo "build: $out/console $(cat "$out"/console/* | wc -c) B ($gz B gzip)"
