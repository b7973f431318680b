-- The database of the front desk (D1; SQLite in the native tests): what happened to each user,
-- the rate limits of notices and alerts, the users who asked for a human, and the shared copies
-- of WeChat's agent lists. Every table is per account (`appid`).
--
-- Rows written cost D1's free plan (100,000 a day); an index entry counts as a row. So each
-- table has at most one index beyond its key.

-- One row per push (entry 'push': its message type or event, the decision, the transfer's
-- target; a session event's agents) and one per effect outcome (entry 'effect': sent, skipped
-- and why, failed and the errcode). Never message text. `at` is the push's CreateTime for a
-- push, the time of the outcome for an effect.
CREATE TABLE ledger (
  id INTEGER PRIMARY KEY,
  appid TEXT NOT NULL,
  openid TEXT NOT NULL,
  at INTEGER NOT NULL,
  entry TEXT NOT NULL CHECK (entry IN ('push', 'effect')),
  -- A push's key (FromUserName|CreateTime|MsgId, or ...|Event|EventKey); NULL for an effect.
  push_key TEXT CHECK ((entry = 'push') = (push_key IS NOT NULL)),
  what TEXT NOT NULL,
  outcome TEXT NOT NULL,
  kf_account TEXT,
  detail TEXT
);

-- A user's timeline (newest first), and a push's row once per account: WeChat retries a push
-- with the same key and CreateTime, so the insert of a retry conflicts here and only the first
-- delivery runs the push's effects (effects have no key: NULLs never conflict).
CREATE UNIQUE INDEX ledger_by_user ON ledger (appid, openid, at, push_key);

-- Rate limits: a notice to a user, a waiting alert for a user, the queue and credentials
-- alerts. Taken by one conditional upsert: only one request gets a limit that has run out.
CREATE TABLE limits (
  appid TEXT NOT NULL,
  name TEXT NOT NULL,
  until INTEGER NOT NULL,
  PRIMARY KEY (appid, name)
) WITHOUT ROWID;

-- Users who asked for a human (the 转人工 gate), until when their messages are transferred.
CREATE TABLE requests (
  appid TEXT NOT NULL,
  openid TEXT NOT NULL,
  until INTEGER NOT NULL,
  PRIMARY KEY (appid, openid)
) WITHOUT ROWID;

-- Copies of WeChat's answers shared by every isolate: the online list (30 s), the agent list
-- for nicknames (10 minutes).
CREATE TABLE cache (
  appid TEXT NOT NULL,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  fetched_at INTEGER NOT NULL,
  PRIMARY KEY (appid, name)
) WITHOUT ROWID;
