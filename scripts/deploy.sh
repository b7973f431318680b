#!/usr/bin/env bash
# `make deploy`: build, apply migrations/ to the D1 database, deploy. wrangler.toml names the
# KV namespace and the database without ids: the first `wrangler deploy` creates them
# (automatic provisioning). So on the first deploy the worker goes out first and the migrations
# follow (until they do, the database's tables are missing: pushes are still answered, the log
# lines say the ledger was skipped); afterwards the migrations go first, so new code never meets
# an old schema. wrangler applies each migration file in one transaction and stops at the first
# that fails, naming it.
set -euo pipefail
cd "$(dirname "$0")/.."
database=$(node -e "
  const { unstable_readConfig } = require('wrangler');
  const db = unstable_readConfig({ config: 'wrangler.toml' }).d1_databases.find((d) => d.binding === 'WECHAT_DB');
  process.stdout.write(db.database_name);
")
bash scripts/build.sh
if npx wrangler d1 list --json | node -e "
  let s = ''; process.stdin.on('data', (c) => (s += c)).on('end', () => {
    process.exit(JSON.parse(s).some((d) => d.name === process.argv[1]) ? 0 : 1);
  });" "$database"; then
  npx wrangler d1 migrations apply WECHAT_DB --remote
  npx wrangler deploy
else
  echo "deploy: no database \"$database\" yet: deploying (wrangler creates it), then applying the migrations"
  npx wrangler deploy
  npx wrangler d1 migrations apply WECHAT_DB --remote
fi
