// A week of plausible front-desk traffic, as the worker's ledger records it, and the agents'
// messages WeChat's getmsglist would answer for it: `make dev` seeds the local database with it
// (scripts/seed-dev.mjs), `make mock` answers its records, and the browser test opens 数据 on it.
// Deterministic: the same hours give the same rows, whoever generates them (a seeded PRNG per
// hour), so the database and the mock agree.
//
// Each hour (busier by day, quiet at night): users write; most are transferred and picked up by
// one of the live account's three agents after a wait of seconds to minutes (a few never are);
// sessions last minutes, now and then switched to another agent; at night the desk answers
// "closed" or transfers with a notice and a waiting alert. Each session's first response is a row
// as the cron's import writes it. Times are +08:00.

export const AGENTS = ['kf2001@gh_10f6c3c3ac5a', 'kf2002@gh_10f6c3c3ac5a', 'kf2003@gh_10f6c3c3ac5a'];
const OFFSET = 8 * 3600;

/** mulberry32: a small seeded PRNG. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Users writing in a local hour (0-23): a working day's curve. */
const PER_HOUR = [1, 0, 0, 0, 0, 1, 2, 4, 8, 12, 14, 12, 9, 11, 13, 12, 10, 8, 6, 5, 4, 3, 2, 1];

/**
 * The ledger rows and agents' records of the `days` days up to `now` (Unix seconds), for
 * `appid`. Rows after `now` are left out (a session that has not closed yet stays open).
 */
export function week(now, { days = 7, appid = 'wx5823bf96d3bd56c7' } = {}) {
  const rows = [];
  const records = [];
  const firstHour = Math.floor((now - days * 86400) / 3600) * 3600;
  const push = (openid, at, what, outcome, kf_account = null, detail = null, after_hours = null) => {
    if (at > now) return;
    rows.push({ appid, openid, at, entry: 'push', push_key: `seed|${openid}|${at}|${what}`, what, outcome, kf_account, detail, after_hours });
  };
  const message = (openid, at, what, outcome, detail = null, open = true) => push(openid, at, what, outcome, null, detail, open ? 0 : 1);
  const effect = (openid, at, what, outcome, detail = null) => {
    if (at > now) return;
    rows.push({ appid, openid, at, entry: 'effect', push_key: null, what, outcome, kf_account: null, detail, after_hours: null });
  };
  for (let hour = firstHour; hour <= now; hour += 3600) {
    const random = prng(hour / 3600);
    const local = Math.floor(((hour + OFFSET) % 86400) / 3600);
    const open = local >= 9 && local < 21;
    const users = PER_HOUR[local] + Math.floor(random() * 3);
    for (let u = 0; u < users; u += 1) {
      const openid = `oSeedUser${String(Math.floor(random() * 800)).padStart(4, '0')}`;
      const at = hour + Math.floor(random() * 3300);
      if (!open) {
        if (random() < 0.5) {
          message(openid, at, 'text', 'closed', null, false);
        } else {
          message(openid, at, 'text', 'transfer', 'closed', false);
          effect(openid, at + 1, 'notice_closed', random() < 0.9 ? 'sent' : 'failed');
          effect(openid, at + 1, 'alert_waiting', random() < 0.7 ? 'sent' : 'skipped', 'rate limited');
        }
        continue;
      }
      if (random() < 0.2) {
        message(openid, at, 'text', 'keyword');
        continue;
      }
      message(openid, at, 'text', 'transfer');
      if (random() < 0.4) message(openid, at + 20 + Math.floor(random() * 60), 'image', 'transfer');
      if (random() < 0.06) continue; // never picked up
      const agent = AGENTS[Math.floor(random() * AGENTS.length)];
      const wait = 10 + Math.floor(random() ** 3 * 1200);
      const start = at + wait;
      push(openid, start, 'event:kf_create_session', 'success', agent);
      const answered = start + 5 + Math.floor(random() * 120);
      records.push({ openid, opercode: 2002, text: '您好，请问有什么可以帮您？', time: answered, worker: agent });
      // The row the cron's import would write for it (stats.first_response), so that the 数据
      // page shows first responses without the cron having run.
      if (answered <= now) {
        rows.push({ appid, openid, at: start, entry: 'push', push_key: 'first_response', what: 'first_response', outcome: 'seen', kf_account: agent, detail: String(answered), after_hours: null });
      }
      let closer = agent;
      const length = 120 + Math.floor(random() * 1500);
      if (random() < 0.1) {
        closer = AGENTS[(AGENTS.indexOf(agent) + 1) % AGENTS.length];
        push(openid, start + Math.floor(length / 2), 'event:kf_switch_session', 'success', closer, agent);
      }
      push(openid, start + length, 'event:kf_close_session', 'success', closer);
    }
  }
  rows.sort((a, b) => a.at - b.at);
  records.sort((a, b) => a.time - b.time);
  return { rows, records: records.filter((r) => r.time <= now) };
}

const COLUMNS = ['appid', 'openid', 'at', 'entry', 'push_key', 'what', 'outcome', 'kf_account', 'detail', 'after_hours'];

/** SQL statements inserting `rows` into the ledger (for `wrangler d1 execute --file`). */
export function insertSql(rows) {
  const value = (v) => (v == null ? 'NULL' : typeof v === 'number' ? String(v) : `'${String(v).replaceAll("'", "''")}'`);
  const lines = [];
  for (let i = 0; i < rows.length; i += 200) {
    const chunk = rows.slice(i, i + 200).map((r) => `(${COLUMNS.map((c) => value(r[c])).join(', ')})`);
    lines.push(`INSERT INTO ledger (${COLUMNS.join(', ')}) VALUES\n${chunk.join(',\n')}\nON CONFLICT DO NOTHING;`);
  }
  return lines.join('\n');
}

/** Inserts `rows` into a D1 binding (miniflare's), in batches. */
export async function insertRows(db, rows) {
  const sql = `INSERT INTO ledger (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map(() => '?').join(', ')}) ON CONFLICT DO NOTHING`;
  for (let i = 0; i < rows.length; i += 500) {
    await db.batch(rows.slice(i, i + 500).map((r) => db.prepare(sql).bind(...COLUMNS.map((c) => r[c] ?? null))));
  }
}
