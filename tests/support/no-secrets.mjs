#!/usr/bin/env node
// After the integration suite (make test-integration): no log line any worker wrote in the whole
// suite holds a secret: the environment's (Token, EncodingAESKey, AppSecret, ADMIN_TOKEN) and
// those the tests made and named with noteSecret (accounts' Tokens, AES keys and AppSecrets,
// operator tokens, ACCOUNTS_KEY).
//   node tests/support/no-secrets.mjs <WORKER_LOG_DIR>
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { defaultBindings } from './worker.mjs';

const dir = process.argv[2];
if (!dir) throw new Error('usage: no-secrets.mjs <WORKER_LOG_DIR>');
const files = readdirSync(dir);
const secrets = new Set(['WECHAT_TOKEN', 'WECHAT_ENCODING_AES_KEY', 'WECHAT_APPSECRET', 'ADMIN_TOKEN'].map((k) => defaultBindings[k]));
for (const f of files.filter((f) => f.startsWith('secrets-'))) {
  for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) if (line) secrets.add(line);
}
const logs = files.filter((f) => f.endsWith('.log'));
let lines = 0;
const found = [];
for (const f of logs) {
  for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
    lines++;
    for (const s of secrets) if (line.includes(s)) found.push(`${f}: a secret of ${s.length} characters in: ${line.slice(0, 200).replaceAll(s, '<secret>')}`);
  }
}
if (logs.length === 0 || lines < 100) {
  console.error(`no-secrets: only ${lines} log lines in ${logs.length} files under ${dir}: was WORKER_LOG_DIR set?`);
  process.exit(1);
}
if (found.length > 0) {
  console.error(`no-secrets: ${found.length} log lines hold a secret:\n${found.slice(0, 20).join('\n')}`);
  process.exit(1);
}
console.log(`no-secrets: ${lines} log lines from ${logs.length} test files, none holds any of ${secrets.size} secrets`);
