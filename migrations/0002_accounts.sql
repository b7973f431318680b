-- Official Accounts served from the database at /wechat/{appid}, beside the account of the
-- environment (`default`, at /wechat). An account's secrets (its Token, EncodingAESKey and
-- AppSecret) are stored only sealed: one AES-256-GCM box under the Workers secret ACCOUNTS_KEY,
-- bound to the appid (a box copied to another account does not open). Everything else of an
-- account (its rules, token cache, limits, ledger) is keyed by its appid in the other tables.
CREATE TABLE accounts (
  appid TEXT PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  -- "v1." + base64(nonce || ciphertext || tag) of {"token", "aes_key"?, "secret"?}.
  sealed TEXT NOT NULL,
  -- {"kf_accounts": [...], "kf_routing": "static"|"online", "token_endpoint": "stable"|"classic"}
  settings TEXT NOT NULL,
  created INTEGER NOT NULL,
  updated INTEGER NOT NULL
) WITHOUT ROWID;
