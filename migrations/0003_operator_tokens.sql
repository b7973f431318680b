-- Operator tokens: each reaches one database account's admin routes (its messages, agents,
-- rules, status, ledger), nothing else. The owner issues one with a name and sees it once; only
-- the SHA-256 of its secret part is kept. `last_used` is written at most once an hour.
CREATE TABLE operator_tokens (
  -- The token's public part (16 hex digits), the row's key.
  id TEXT PRIMARY KEY NOT NULL,
  appid TEXT NOT NULL,
  name TEXT NOT NULL,
  hash TEXT NOT NULL,
  created INTEGER NOT NULL,
  last_used INTEGER
) WITHOUT ROWID;

-- An account's tokens (the owner's list; removed with the account).
CREATE INDEX operator_tokens_by_account ON operator_tokens (appid, created);
