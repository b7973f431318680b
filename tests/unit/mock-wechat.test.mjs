// `make mock`, the WeChat API that `make dev` talks to, looks like a live account: the console's
// overview shows waits of minutes (not "19365 天"), agents online and busy, open sessions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const program = fileURLToPath(new URL('../support/mock-wechat.mjs', import.meta.url));
const SECRET = 'dev-app-secret';

test('make mock serves a live-looking account: a short queue waiting minutes, agents online, open sessions', async () => {
  const child = spawn(process.execPath, [program, '0'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, WECHAT_APPSECRET: SECRET } });
  try {
    const base = await new Promise((resolve, reject) => {
      child.stdout.setEncoding('utf8');
      child.stdout.on('data', (line) => { const m = /on (http:\/\/\S+)/.exec(line); if (m) resolve(m[1]); });
      child.on('exit', (code) => reject(new Error(`mock exited with ${code}`)));
    });
    const token = (await (await fetch(`${base}/cgi-bin/token?grant_type=client_credential&appid=wx5823bf96d3bd56c7&secret=${SECRET}`)).json()).access_token;
    assert.ok(token, 'a token');
    const get = async (path, query = '') => (await fetch(`${base}${path}?access_token=${token}${query}`)).json();
    const now = Math.floor(Date.now() / 1000);

    const queue = await get('/customservice/kfsession/getwaitcase');
    assert.equal(queue.count, 3);
    const waits = queue.waitcaselist.map((w) => now - w.latest_time).sort((a, b) => a - b);
    assert.ok(waits.every((s) => s >= 30 && s <= 10 * 60), `waits of under 10 minutes, not years: ${waits}`);

    const agents = (await get('/cgi-bin/customservice/getkflist')).kf_list;
    const online = (await get('/cgi-bin/customservice/getonlinekflist')).kf_online_list;
    assert.deepEqual(agents.map((a) => a.kf_nick), ['小客服', '阿杰', '莉莉']);
    assert.equal(online.length, 2);
    const busy = online.filter((a) => a.accepted_case >= a.auto_accept);
    assert.deepEqual(busy.map((a) => a.kf_account), ['kf2002@gh_10f6c3c3ac5a']);

    const sessions = await get('/customservice/kfsession/getsessionlist', '&kf_account=kf2002%40gh_10f6c3c3ac5a');
    assert.equal(sessions.sessionlist.length, 2);
    assert.ok(sessions.sessionlist.every((x) => now - x.createtime < 3600), 'sessions opened within the hour');
  } finally {
    child.kill();
  }
});
