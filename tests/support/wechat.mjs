// What WeChat's servers do, for the tests: sign requests, encrypt bodies, decrypt replies.
import { createHash, createCipheriv, createDecipheriv } from 'node:crypto';
import { readFileSync } from 'node:fs';

export const TOKEN = 'QDG6eK';
export const APPID = 'wx5823bf96d3bd56c7';
export const AES_KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';

const key = Buffer.from(AES_KEY + '=', 'base64');
const iv = key.subarray(0, 16);

export const fixture = (rel) => readFileSync(new URL(`../fixtures/${rel}`, import.meta.url));

export function sign(...parts) {
  return createHash('sha1').update([...parts].sort().join('')).digest('hex');
}

export function encrypt(xml, appid = APPID) {
  const msg = Buffer.from(xml, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(msg.length);
  const body = Buffer.concat([Buffer.from('0123456789abcdef'), len, msg, Buffer.from(appid)]);
  const pad = 32 - (body.length % 32);
  const c = createCipheriv('aes-256-cbc', key, iv).setAutoPadding(false);
  return Buffer.concat([c.update(Buffer.concat([body, Buffer.alloc(pad, pad)])), c.final()]).toString('base64');
}

export function decrypt(b64) {
  const d = createDecipheriv('aes-256-cbc', key, iv).setAutoPadding(false);
  const plain = Buffer.concat([d.update(Buffer.from(b64, 'base64')), d.final()]);
  const content = plain.subarray(0, plain.length - plain[plain.length - 1]);
  const len = content.readUInt32BE(16);
  return { xml: content.subarray(20, 20 + len).toString('utf8'), appid: content.subarray(20 + len).toString() };
}

export const now = () => Math.floor(Date.now() / 1000);

/** Query string of a plain-mode push. */
export function plainQuery({ timestamp = now(), nonce = '1320562132', token = TOKEN } = {}) {
  return `signature=${sign(token, String(timestamp), nonce)}&timestamp=${timestamp}&nonce=${nonce}&openid=oyORnuP8q7ou2gfYjqLzSIWZf0rs`;
}

/** Query string and body of a safe-mode (or compatible-mode) push of `xml`. */
export function safePush(xml, { timestamp = now(), nonce = '1320562132', compatible = false, appid = APPID } = {}) {
  const enc = encrypt(xml, appid);
  const query = `signature=${sign(TOKEN, String(timestamp), nonce)}&timestamp=${timestamp}&nonce=${nonce}` +
    `&openid=o1&encrypt_type=aes&msg_signature=${sign(TOKEN, String(timestamp), nonce, enc)}`;
  const plainFields = compatible ? '<FromUserName><![CDATA[spoofed]]></FromUserName><MsgType><![CDATA[event]]></MsgType>' : '';
  const body = `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>${plainFields}<Encrypt><![CDATA[${enc}]]></Encrypt></xml>`;
  return { query, body };
}

/** Reads a field of a reply (`<Name><![CDATA[v]]></Name>` or `<Name>v</Name>`). */
export function field(xml, name) {
  const m = xml.match(new RegExp(`<${name}>(?:<!\\[CDATA\\[([\\s\\S]*?)\\]\\]>|([^<]*))</${name}>`));
  return m ? (m[1] ?? m[2]) : undefined;
}
