#!/usr/bin/env bash
# `make test`'s check of the deploy configuration: `wrangler deploy --dry-run` over the built
# bundle (offline) must succeed and bind what the worker needs: the KV namespace, the D1
# database, the static assets and the cron.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
log=$(npx wrangler deploy --dry-run --outdir "$out" --config wrangler.toml 2>&1) || { echo "$log"; exit 1; }
for binding in "env.WECHAT_KV " "env.WECHAT_DB " "from the assets directory"; do
  grep -q "$binding" <<<"$log" || { echo "$log"; echo "check-deploy: the dry run does not bind $binding" >&2; exit 1; }
done
ls "$out"/*.wasm >/dev/null 2>&1 && [ -s "$out/worker.js" ] || { echo "check-deploy: no worker.js and wasm in the dry run's output" >&2; exit 1; }
echo "check-deploy: wrangler deploy --dry-run binds WECHAT_KV, WECHAT_DB and the assets"
