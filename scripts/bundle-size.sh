#!/usr/bin/env bash
# Bundle size as Cloudflare would upload it: `wrangler deploy --dry-run` (offline) over the
# already built bundle, then raw and gzip sizes of what it wrote. Prints one line a figure;
# exits 1 when the gzip size is over the budget (BUNDLE_BUDGET_KIB, default 150).
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${BUNDLE_BUDGET_KIB:-150}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The [build] command would rebuild; the bundle is already built by `make build`.
CLOUDFLARE_CF_FETCH_ENABLED=false WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false \
  npx wrangler deploy --dry-run --outdir "$out" --config wrangler.toml 2>&1 | grep -E "Total Upload|gzip" || true
raw=$(find "$out" -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.mjs' \) -printf '%s\n' | awk '{s+=$1} END {print s}')
gz=$(find "$out" -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.mjs' \) -exec gzip -9 -c {} \; | wc -c)
wasm=$(find "$out" -name '*.wasm' -printf '%s\n' | head -1)
printf 'bundle_raw_bytes %s\nbundle_gzip_bytes %s\nbundle_gzip_kib %.1f\nwasm_raw_bytes %s\nbudget_gzip_kib %s\n' \
  "$raw" "$gz" "$(echo "$gz/1024" | bc -l)" "$wasm" "$budget"
if [ "$gz" -gt $((budget * 1024)) ]; then echo "bundle over budget" >&2; exit 1; fi
