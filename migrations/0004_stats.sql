-- Service levels (GET /api/stats), folded from the ledger by the cron and before each report:
-- a report reads hourly rows, never the ledger, whose only index is per user.

-- One row per account (`kf_account` '') and per agent, per UTC hour (`hour`: Unix seconds of the
-- hour's start). Counts are columns; what a report needs whole is kept as space-separated lists:
-- `users` and `transferred` are the users of the hour (8 characters of a SHA-256 of appid and
-- OpenID: never the OpenID), `waits` is `start:seconds` of each episode picked up (`start` in
-- seconds after the hour: its start's hour holds it), `first_responses` and `session_secs`
-- seconds. Written by the fold only.
CREATE TABLE stats_hours (
  appid TEXT NOT NULL,
  hour INTEGER NOT NULL,
  kf_account TEXT NOT NULL,
  pushes INTEGER NOT NULL,
  messages INTEGER NOT NULL,
  after_hours INTEGER NOT NULL,
  episodes INTEGER NOT NULL,
  sessions INTEGER NOT NULL,
  switches INTEGER NOT NULL,
  notices_sent INTEGER NOT NULL,
  notices_skipped INTEGER NOT NULL,
  notices_failed INTEGER NOT NULL,
  alerts_sent INTEGER NOT NULL,
  alerts_skipped INTEGER NOT NULL,
  alerts_failed INTEGER NOT NULL,
  users TEXT NOT NULL,
  transferred TEXT NOT NULL,
  waits TEXT NOT NULL,
  first_responses TEXT NOT NULL,
  session_secs TEXT NOT NULL,
  PRIMARY KEY (appid, hour, kf_account)
) WITHOUT ROWID;

-- Users the fold follows: waiting for an agent since `waiting_since` (the transfer that opened
-- their episode), or in a session with `session_agent` since `session_start`. A user with
-- neither has no row.
CREATE TABLE stats_users (
  appid TEXT NOT NULL,
  openid TEXT NOT NULL,
  waiting_since INTEGER,
  session_agent TEXT,
  session_start INTEGER,
  PRIMARY KEY (appid, openid)
) WITHOUT ROWID;

-- The users still waiting, by when they started (a report's pending episodes; the cron deletes
-- users who waited for days and never wrote again). Only waiting users have an entry.
CREATE INDEX stats_users_waiting ON stats_users (waiting_since) WHERE waiting_since IS NOT NULL;

-- Sessions by their start: the cron forgets those whose close never came. Only users in a
-- session have an entry.
CREATE INDEX stats_users_sessions ON stats_users (session_start) WHERE session_start IS NOT NULL;

-- Whether a user's message arrived outside the rules' office hours (1, else 0), whatever the desk
-- answered; NULL for events and for rows written before this column (the fold then infers it
-- from the decision). No index: the fold reads rows by `id`.
ALTER TABLE ledger ADD COLUMN after_hours INTEGER;

-- How far the fold has read the ledger: a fold of the rows after `first_id` through `last_id`
-- inserts its row in the same transaction as its writes. Two folds from the same place cannot
-- both commit (the second insert fails and its transaction rolls back), so every ledger row is
-- counted exactly once, whichever isolates fold at once. A claim is deleted an hour after it was
-- made (`at`), long after any fold that read the same cursor has finished.
CREATE TABLE stats_folds (
  first_id INTEGER PRIMARY KEY,
  last_id INTEGER NOT NULL,
  at INTEGER NOT NULL
);
