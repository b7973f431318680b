// The admin API client. The token lives in sessionStorage only (this tab, until it closes):
// never in a URL, never in localStorage, never in a cookie.
import { explain } from './i18n.js';

const KEY = 'wechat-kf-console:token';
const ACCOUNT = 'wechat-kf-console:account';
const ROLE = 'wechat-kf-console:role';
const NAME = 'wechat-kf-console:account-name';

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  /** Forgets the token and everything that came with it (the role, the account). */
  clear: () => {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ACCOUNT);
    sessionStorage.removeItem(ROLE);
    sessionStorage.removeItem(NAME);
  },
};

/** Who is logged in: `owner` (ADMIN_TOKEN) or `operator` (one account's token). */
export const role = {
  get: () => sessionStorage.getItem(ROLE),
  set: (r) => sessionStorage.setItem(ROLE, r),
};

/**
 * The Official Account the console acts for: `null` for the deployment's own (`/wechat`), else
 * the appid of a database account, whose routes are `/api/accounts/{appid}/...`.
 */
export const account = {
  get: () => sessionStorage.getItem(ACCOUNT),
  set: (appid) => (appid ? sessionStorage.setItem(ACCOUNT, appid) : sessionStorage.removeItem(ACCOUNT)),
  /** An operator's account name, as `/api/whoami` said it. */
  name: () => sessionStorage.getItem(NAME),
  setName: (name) => sessionStorage.setItem(NAME, name),
};

/**
 * `path` for the account the console acts for: `/api/rules` → `/api/accounts/{appid}/rules`.
 * The deployment's own routes (`/api/accounts...`, `/api/whoami`) stay as they are.
 */
export function scoped(path) {
  const appid = account.get();
  if (!appid || !path.startsWith('/api/') || path.startsWith('/api/accounts') || path.startsWith('/api/whoami')) return path;
  return `/api/accounts/${encodeURIComponent(appid)}${path.slice('/api'.length)}`;
}

/** An error answer: `status` 0 when the server could not be reached; `body` as answered. */
export class ApiError extends Error {
  constructor(status, body) {
    super(explain(status, body));
    this.status = status;
    this.body = body;
    /** The JSON path of the field at fault (`hours.weekly.mon[1]`), when the API named one. */
    this.field = typeof body?.field === 'string' ? body.field : null;
  }
}

let onUnauthorized = () => {};
/** What to do when a call answers 401 (the token is wrong or was changed). */
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

/**
 * Calls the worker. `json` is sent as JSON; `body` with `type` as its Content-Type (a file).
 * Resolves to the parsed JSON answer (with `blob`: the answer's bytes as a Blob, the CSV export);
 * rejects with an {@link ApiError} for a non-2xx status or a WeChat `errcode` other than 0.
 */
export async function api(path, { method = 'GET', json, body, type, auth = true, blob = false } = {}) {
  const headers = {};
  if (auth) headers.authorization = `Bearer ${token.get() ?? ''}`;
  if (json !== undefined) {
    body = JSON.stringify(json);
    headers['content-type'] = 'application/json';
  } else if (type) {
    headers['content-type'] = type;
  }
  let res;
  try {
    res = await fetch(scoped(path), { method, headers, body, cache: 'no-store', credentials: 'omit', redirect: 'error' });
  } catch {
    throw new ApiError(0, { error: 'network' });
  }
  if (blob && res.ok) return res.blob();
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { error: 'not_json', status: res.status };
  }
  if (res.status === 401 && auth) {
    const err = new ApiError(401, data);
    onUnauthorized(err);
    throw err;
  }
  if (!res.ok || (typeof data?.errcode === 'number' && data.errcode !== 0)) throw new ApiError(res.status, data);
  return data;
}

/** `encodeURIComponent` for a path segment (a kf_account holds an `@`). */
export const seg = (s) => encodeURIComponent(s);
