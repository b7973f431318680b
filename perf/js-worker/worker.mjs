// The same callback job as the Rust worker, written as a plain JavaScript Worker the way a good
// Workers developer would: Web Crypto (crypto.subtle) for SHA-1 and AES-256-CBC, fast-xml-parser
// for the XML. It exists only as the comparison point of perf/cpu.mjs (bundled there with esbuild,
// as wrangler would); it is not deployed.
//
// Routes: GET /wechat (URL check), POST /wechat (plain, compatible and safe mode), GET /healthz,
// anything else 404 JSON. One JSON log line per request. Same variables as the Rust worker:
// WECHAT_TOKEN, WECHAT_APPID, WECHAT_ENCODING_AES_KEY, WECHAT_KF_ACCOUNT, WECHAT_MAX_CLOCK_SKEW_SECS,
// and the WECHAT_KV namespace for the front desk's rules.
import { XMLParser } from 'fast-xml-parser';

const MAX_BODY_BYTES = 64 * 1024;
const encoder = new TextEncoder();
const utf8 = new TextDecoder('utf-8', { fatal: true });

// Strings stay strings (MsgId is a u64: as a Number it would lose digits); CDATA is read as text.
const parser = new XMLParser({ parseTagValue: false, parseAttributeValue: false, ignoreAttributes: true, trimValues: true });

class HttpError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}
const missing = (field) => new HttpError(400, 'missing_parameter', 'a required query parameter is missing', field);
const badSignature = () => new HttpError(403, 'invalid_signature', 'signature does not match');
const decryptFailed = () => new HttpError(400, 'decrypt_failed', 'the message could not be decrypted');
const malformed = () => new HttpError(400, 'malformed_xml', 'the body is not a valid WeChat message');

const headersFor = (type) => ({ 'content-type': type, 'cache-control': 'no-store' });
const text = (body, status = 200) => new Response(body, { status, headers: headersFor('text/plain; charset=utf-8') });
const xml = (body) => new Response(body, { status: 200, headers: headersFor('application/xml; charset=utf-8') });
const json = (value, status = 200) => new Response(JSON.stringify(value), { status, headers: headersFor('application/json; charset=utf-8') });

const nonEmpty = (v) => (typeof v === 'string' && v.length > 0 ? v : undefined);

// ---- crypto -------------------------------------------------------------------------------------

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const toHex = (buf) => {
  const b = new Uint8Array(buf);
  let s = '';
  for (let i = 0; i < b.length; i++) s += HEX[b[i]];
  return s;
};

async function sha1Sorted(parts) {
  return toHex(await crypto.subtle.digest('SHA-1', encoder.encode([...parts].sort().join(''))));
}

function sameHex(a, b) {
  const x = encoder.encode(a.toLowerCase());
  const y = encoder.encode(b);
  return x.byteLength === y.byteLength && crypto.subtle.timingSafeEqual(x, y);
}

function fromBase64(s) {
  const bin = atob(s); // forgiving base64: lenient about the 43-char key's trailing bits
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function toBase64(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

// The imported key, once per isolate (an isolate's environment never changes).
let cachedKey;
function aesKey(encodingAesKey) {
  if (cachedKey?.source !== encodingAesKey) {
    const raw = fromBase64(encodingAesKey + '=');
    if (raw.length !== 32) throw new HttpError(500, 'server_misconfigured', 'the server is not configured');
    const key = crypto.subtle.importKey('raw', raw, { name: 'AES-CBC' }, false, ['encrypt', 'decrypt']);
    cachedKey = { source: encodingAesKey, key, iv: raw.slice(0, 16) };
  }
  return cachedKey;
}

// One block of sixteen 0x10 bytes: a full PKCS#7 (16-byte) padding block.
const FULL_PAD_BLOCK = new Uint8Array(16).fill(16);

/**
 * AES-256-CBC decryption of WeChat's ciphertext. WeChat pads with PKCS#7 to a multiple of 32
 * (pad values 1..=32), and Web Crypto's AES-CBC insists on 16-byte PKCS#7, which fails on a pad
 * of 17..=32. So one block is appended that decrypts to a full 16-byte padding block:
 * P' = D(C') xor C_last = FULL_PAD_BLOCK  <=>  C' = E(FULL_PAD_BLOCK xor C_last), which is the
 * first block of a CBC encryption of FULL_PAD_BLOCK under IV = C_last. subtle strips that block
 * and hands back WeChat's padded plaintext, whose 32-byte padding we check and strip ourselves.
 */
async function decryptWeChat({ key, iv }, ciphertext) {
  if (ciphertext.length < 32 || ciphertext.length % 16 !== 0) throw decryptFailed();
  const k = await key;
  const last = ciphertext.subarray(ciphertext.length - 16);
  const extra = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-CBC', iv: last }, k, FULL_PAD_BLOCK), 0, 16);
  const extended = new Uint8Array(ciphertext.length + 16);
  extended.set(ciphertext);
  extended.set(extra, ciphertext.length);
  const plain = new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-CBC', iv }, k, extended));
  const pad = plain[plain.length - 1];
  if (pad < 1 || pad > 32 || pad > plain.length) throw decryptFailed();
  for (let i = plain.length - pad; i < plain.length; i++) if (plain[i] !== pad) throw decryptFailed();
  return plain.subarray(0, plain.length - pad);
}

/** AES-256-CBC encryption with WeChat's 32-byte PKCS#7, added here; subtle's own 16-byte pad block is cut off. */
async function encryptWeChat({ key, iv }, plain) {
  const pad = 32 - (plain.length % 32);
  const padded = new Uint8Array(plain.length + pad);
  padded.set(plain);
  padded.fill(pad, plain.length);
  const out = await crypto.subtle.encrypt({ name: 'AES-CBC', iv }, await key, padded);
  return new Uint8Array(out, 0, padded.length);
}

/** random(16) ‖ len(msg) big-endian u32 ‖ msg ‖ appid, all UTF-8. */
function frame(msg, appid) {
  const m = encoder.encode(msg);
  const a = encoder.encode(appid);
  const out = new Uint8Array(20 + m.length + a.length);
  crypto.getRandomValues(out.subarray(0, 16));
  new DataView(out.buffer).setUint32(16, m.length);
  out.set(m, 20);
  out.set(a, 20 + m.length);
  return out;
}

function unframe(content, appid) {
  if (content.length < 20) throw decryptFailed();
  const len = new DataView(content.buffer, content.byteOffset, content.byteLength).getUint32(16);
  if (20 + len > content.length) throw decryptFailed();
  let msg, from;
  try {
    msg = utf8.decode(content.subarray(20, 20 + len));
    from = utf8.decode(content.subarray(20 + len));
  } catch {
    throw decryptFailed();
  }
  if (from !== appid) throw decryptFailed();
  return msg;
}

// ---- configuration ------------------------------------------------------------------------------

function config(env) {
  const token = nonEmpty(env.WECHAT_TOKEN);
  const appid = nonEmpty(env.WECHAT_APPID);
  const aes = nonEmpty(env.WECHAT_ENCODING_AES_KEY);
  const skewRaw = nonEmpty(env.WECHAT_MAX_CLOCK_SKEW_SECS);
  const skew = skewRaw === undefined ? 300 : Number(skewRaw);
  const kf = nonEmpty(env.WECHAT_KF_ACCOUNT)?.split(',').map((s) => s.trim()).find(Boolean);
  return { token, appid, aes, skew, kf, aesValid: aes === undefined || /^[A-Za-z0-9+/]{43}$/.test(aes) };
}

// ---- the front desk's rules ---------------------------------------------------------------------

// Like the Rust worker, a push reads the front desk's rules document (`rules:<appid>` in KV) once
// per isolate per 30 s and keeps it in memory, so both do the same I/O: one KV read on an
// isolate's first push. Only the default decision is implemented here (transfer user messages,
// acknowledge events); the benchmark stores no rules.
const RULES_TTL_MS = 30_000;
let rules = { at: -Infinity, value: null };
async function currentRules(env, appid) {
  const now = Date.now();
  if (now - rules.at < RULES_TTL_MS) return rules.value;
  let value = rules.value;
  try {
    const raw = await env.WECHAT_KV.get(`rules:${appid ?? ''}`);
    value = raw === null ? null : JSON.parse(raw);
  } catch {
    // A failing store keeps the last rules (or none) until the next attempt.
  }
  rules = { at: now, value };
  return value;
}

// ---- XML ----------------------------------------------------------------------------------------

/** The document, validated; no DTD. */
function parseXml(body) {
  if (/<!DOCTYPE/i.test(body)) throw malformed();
  try {
    return parser.parse(body, true);
  } catch {
    throw malformed();
  }
}

function parseMessage(body) {
  const m = parseXml(body)?.xml;
  if (!m || typeof m !== 'object') throw malformed();
  for (const f of ['ToUserName', 'FromUserName', 'MsgType']) {
    if (typeof m[f] !== 'string' || m[f] === '') throw new HttpError(400, 'missing_field', 'a required field is missing', f);
  }
  return m;
}

const cdata = (s) => `<![CDATA[${String(s).replaceAll(']]>', ']]]]><![CDATA[>')}]]>`;

function transferReply(msg, now, kf) {
  const target = kf ? `<TransInfo><KfAccount>${cdata(kf)}</KfAccount></TransInfo>` : '';
  return `<xml><ToUserName>${cdata(msg.FromUserName)}</ToUserName><FromUserName>${cdata(msg.ToUserName)}</FromUserName>` +
    `<CreateTime>${now}</CreateTime><MsgType><![CDATA[transfer_customer_service]]></MsgType>${target}</xml>`;
}

// ---- routes -------------------------------------------------------------------------------------

function signedQuery(url) {
  const q = url.searchParams;
  const get = (name) => {
    const v = q.get(name);
    if (!v) throw missing(name);
    return v;
  };
  return { get, q };
}

async function urlCheck(url, cfg) {
  if (!cfg.token) throw new HttpError(500, 'server_misconfigured', 'the server is not configured');
  const { get } = signedQuery(url);
  const signature = get('signature');
  const timestamp = get('timestamp');
  const nonce = get('nonce');
  const echostr = get('echostr');
  if (!sameHex(signature, await sha1Sorted([cfg.token, timestamp, nonce]))) throw badSignature();
  return [text(echostr), 'url_check'];
}

async function message(request, url, cfg, env) {
  if (!cfg.token) throw new HttpError(500, 'server_misconfigured', 'the server is not configured');
  const { get, q } = signedQuery(url);
  const timestamp = get('timestamp');
  const nonce = get('nonce');
  const encrypted = q.get('encrypt_type') === 'aes';
  const signature = encrypted ? get('msg_signature') : get('signature');
  if (!/^\d{1,12}$/.test(timestamp)) throw new HttpError(400, 'invalid_parameter', 'a query parameter is invalid', 'timestamp');
  const now = Math.floor(Date.now() / 1000);
  if (cfg.skew > 0 && Math.abs(now - Number(timestamp)) > cfg.skew) throw new HttpError(403, 'stale_timestamp', 'timestamp outside the accepted window');

  const declared = Number(request.headers.get('content-length') ?? 0);
  if (declared > MAX_BODY_BYTES) throw new HttpError(413, 'payload_too_large', 'the body is too large');
  const raw = await request.arrayBuffer();
  if (raw.byteLength > MAX_BODY_BYTES) throw new HttpError(413, 'payload_too_large', 'the body is too large');
  let body;
  try {
    body = utf8.decode(raw);
  } catch {
    throw malformed();
  }

  if (!encrypted) {
    if (!sameHex(signature, await sha1Sorted([cfg.token, timestamp, nonce]))) throw badSignature();
    await currentRules(env, cfg.appid);
    const msg = parseMessage(body);
    if (msg.MsgType === 'event') return [text('success'), `ack ${msg.Event ?? 'event'}`];
    return [xml(transferReply(msg, now, cfg.kf)), `transfer ${msg.MsgType}${cfg.kf ? ' targeted' : ''}`];
  }

  // Compatible and safe mode: trust only the ciphertext.
  if (!cfg.aes || !cfg.aesValid || !cfg.appid) throw new HttpError(500, 'server_misconfigured', 'the server is not configured');
  const outer = parseMessageEnvelope(body);
  if (!sameHex(signature, await sha1Sorted([cfg.token, timestamp, nonce, outer]))) throw badSignature();
  await currentRules(env, cfg.appid);
  const key = aesKey(cfg.aes);
  let ciphertext;
  try {
    ciphertext = fromBase64(outer);
  } catch {
    throw decryptFailed();
  }
  let inner;
  try {
    inner = unframe(await decryptWeChat(key, ciphertext), cfg.appid);
  } catch (e) {
    throw e instanceof HttpError ? e : decryptFailed();
  }
  const msg = parseMessage(inner);
  if (msg.MsgType === 'event') return [text('success'), `ack ${msg.Event ?? 'event'} encrypted`];
  const reply = transferReply(msg, now, cfg.kf);
  const encrypt = toBase64(await encryptWeChat(key, frame(reply, cfg.appid)));
  const replyNonce = String(crypto.getRandomValues(new Uint32Array(1))[0]);
  const replyTs = String(now);
  const msgSignature = await sha1Sorted([cfg.token, replyTs, replyNonce, encrypt]);
  return [
    xml(`<xml><Encrypt>${cdata(encrypt)}</Encrypt><MsgSignature>${cdata(msgSignature)}</MsgSignature>` +
      `<TimeStamp>${replyTs}</TimeStamp><Nonce>${cdata(replyNonce)}</Nonce></xml>`),
    `transfer ${msg.MsgType} encrypted${cfg.kf ? ' targeted' : ''}`,
  ];
}

function parseMessageEnvelope(body) {
  const encrypt = parseXml(body)?.xml?.Encrypt;
  if (typeof encrypt !== 'string' || encrypt === '') throw new HttpError(400, 'missing_field', 'a required field is missing', 'Encrypt');
  return encrypt;
}

function health(cfg) {
  const missingVars = [];
  const invalid = [];
  if (!cfg.token) missingVars.push('WECHAT_TOKEN');
  if (!cfg.aesValid) invalid.push('WECHAT_ENCODING_AES_KEY');
  if (cfg.aes && !cfg.appid) missingVars.push('WECHAT_APPID');
  return {
    ok: missingVars.length === 0 && invalid.length === 0,
    features: {
      callback: !!cfg.token,
      safe_mode: !!(cfg.aes && cfg.aesValid && cfg.appid),
      kf_targeting: !!cfg.kf,
      kf_routing: 'static',
    },
    missing: missingVars,
    invalid,
  };
}

async function route(request, env) {
  const url = new URL(request.url);
  const cfg = config(env);
  if (url.pathname === '/wechat') {
    if (request.method === 'GET') return ['/wechat', await urlCheck(url, cfg)];
    if (request.method === 'POST') return ['/wechat', await message(request, url, cfg, env)];
    throw Object.assign(new HttpError(405, 'method_not_allowed', 'method not allowed'), { allow: 'GET, POST', route: '/wechat' });
  }
  if (url.pathname === '/healthz') {
    if (request.method === 'GET' || request.method === 'HEAD') return ['/healthz', [json(health(cfg)), 'ok']];
    throw Object.assign(new HttpError(405, 'method_not_allowed', 'method not allowed'), { allow: 'GET, HEAD', route: '/healthz' });
  }
  throw Object.assign(new HttpError(404, 'not_found', 'no such route'), { route: 'other' });
}

export default {
  async fetch(request, env) {
    const started = Date.now();
    let routeName = 'other';
    let response;
    let outcome;
    try {
      [routeName, [response, outcome]] = await route(request, env);
    } catch (e) {
      const err = e instanceof HttpError ? e : new HttpError(500, 'internal_error', 'internal error');
      routeName = e.route ?? (new URL(request.url).pathname === '/wechat' ? '/wechat' : routeName);
      const body = { error: err.code, ...(err.field ? { field: err.field } : {}), message: err.message };
      response = json(body, err.status);
      if (e.allow) response.headers.set('allow', e.allow);
      outcome = err.code;
    }
    const line = JSON.stringify({ route: routeName, method: request.method, status: response.status, outcome, ms: Date.now() - started });
    if (response.status >= 500) console.error(line);
    else console.log(line);
    return response;
  },
};
