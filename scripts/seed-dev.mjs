// `make dev`: a week of plausible traffic in the local database (tests/support/seed.mjs), so that
// the console's 数据 page has something to show on first open. Only into an empty ledger: a
// database that already has rows (yours, or an earlier seed) is left as it is.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { week, insertSql } from '../tests/support/seed.mjs';

const wrangler = (...args) => execFileSync('npx', ['wrangler', 'd1', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });

let appid = 'default';
try {
  const vars = readFileSync('.dev.vars', 'utf8');
  appid = /^WECHAT_APPID\s*=\s*"?([^"\s]+)"?/m.exec(vars)?.[1] ?? 'default';
} catch {
  // No .dev.vars: the account without an AppID.
}
const answer = JSON.parse(wrangler('execute', 'WECHAT_DB', '--local', '--json', '--command', 'SELECT count(*) AS n FROM ledger'));
const rows = answer?.[0]?.results?.[0]?.n;
if (rows !== 0) {
  console.log(`seed: the local ledger has ${rows} rows; nothing seeded`);
} else {
  const { rows: seeded } = week(Math.floor(Date.now() / 1000), { appid });
  const dir = mkdtempSync(join(tmpdir(), 'wechat-kf-seed-'));
  const file = join(dir, 'seed.sql');
  writeFileSync(file, insertSql(seeded));
  try {
    wrangler('execute', 'WECHAT_DB', '--local', '--file', file, '--yes');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`seed: ${seeded.length} ledger rows of a week of traffic for ${appid} (数据 in the console)`);
}
