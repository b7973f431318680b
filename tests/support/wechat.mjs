// What WeChat's servers do: sign requests, encrypt bodies, decrypt replies. The tests use the
// known-answer account below; scripts/send-test-message.mjs makes a peer for any account.
import { createHash, createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

export const TOKEN = 'QDG6eK';
export const APPID = 'wx5823bf96d3bd56c7';
export const AES_KEY = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG';

export const fixture = (rel) => readFileSync(new URL(`../fixtures/${rel}`, import.meta.url));

export const now = () => Math.floor(Date.now() / 1000);

/** `sha1(sort(parts).join(''))`, lowercase hex: WeChat's `signature` and `msg_signature`. */
export function sign(...parts) {
  return createHash('sha1').update([...parts].sort().join('')).digest('hex');
}

/** WeChat for one account: `token`, and `aesKey` + `appid` for safe and compatible mode. */
export function wechatPeer({ token = TOKEN, aesKey = AES_KEY, appid = APPID } = {}) {
  const key = aesKey ? Buffer.from(aesKey + '=', 'base64') : null;
  const iv = key?.subarray(0, 16);

  /** The `Encrypt` field for `xml`: random(16) ‖ len ‖ msg ‖ appid, 32-byte PKCS#7, AES-256-CBC. */
  function encrypt(xml, { forAppid = appid, random = Buffer.from('0123456789abcdef') } = {}) {
    const msg = Buffer.from(xml, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(msg.length);
    const body = Buffer.concat([random, len, msg, Buffer.from(forAppid)]);
    const pad = 32 - (body.length % 32);
    const c = createCipheriv('aes-256-cbc', key, iv).setAutoPadding(false);
    return Buffer.concat([c.update(Buffer.concat([body, Buffer.alloc(pad, pad)])), c.final()]).toString('base64');
  }

  function decrypt(b64) {
    const d = createDecipheriv('aes-256-cbc', key, iv).setAutoPadding(false);
    const plain = Buffer.concat([d.update(Buffer.from(b64, 'base64')), d.final()]);
    const content = plain.subarray(0, plain.length - plain[plain.length - 1]);
    const len = content.readUInt32BE(16);
    return { xml: content.subarray(20, 20 + len).toString('utf8'), appid: content.subarray(20 + len).toString() };
  }

  /** Query string of a plain-mode push. */
  function plainQuery({ timestamp = now(), nonce = '1320562132', signWith = token } = {}) {
    return `signature=${sign(signWith, String(timestamp), nonce)}&timestamp=${timestamp}&nonce=${nonce}&openid=oyORnuP8q7ou2gfYjqLzSIWZf0rs`;
  }

  /** Query string and body of a safe-mode (or compatible-mode) push of `xml`. */
  function safePush(xml, { timestamp = now(), nonce = '1320562132', compatible = false, appid: forAppid = appid, random } = {}) {
    const enc = encrypt(xml, { forAppid, random });
    const query = `signature=${sign(token, String(timestamp), nonce)}&timestamp=${timestamp}&nonce=${nonce}` +
      `&openid=o1&encrypt_type=aes&msg_signature=${sign(token, String(timestamp), nonce, enc)}`;
    const plainFields = compatible ? '<FromUserName><![CDATA[spoofed]]></FromUserName><MsgType><![CDATA[event]]></MsgType>' : '';
    const body = `<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>${plainFields}<Encrypt><![CDATA[${enc}]]></Encrypt></xml>`;
    return { query, body };
  }

  /** The URL check's query string for `echostr`. */
  function urlCheckQuery(echostr, { timestamp = now(), nonce = String(Math.floor(Math.random() * 1e9)) } = {}) {
    return `signature=${sign(token, String(timestamp), nonce)}&timestamp=${timestamp}&nonce=${nonce}&echostr=${echostr}`;
  }

  /** The plaintext of a reply: decrypted when it is the safe-mode envelope. */
  function openReply(reply) {
    const enc = field(reply, 'Encrypt');
    return enc && key ? decrypt(enc).xml : reply;
  }

  return { encrypt, decrypt, plainQuery, safePush, urlCheckQuery, openReply, randomNonce: () => randomBytes(4).readUInt32BE() };
}

const known = wechatPeer();
export const { encrypt, decrypt, safePush } = known;
export const plainQuery = ({ token, ...rest } = {}) => known.plainQuery({ ...rest, signWith: token });

/** Reads a field of a reply: `<Name>v</Name>`, or `<Name>` one or more CDATA sections `</Name>`. */
export function field(xml, name) {
  const m = xml.match(new RegExp(`<${name}>((?:<!\\[CDATA\\[[\\s\\S]*?\\]\\]>)+|[^<]*)</${name}>`));
  if (!m) return undefined;
  return m[1].startsWith('<![CDATA[') ? [...m[1].matchAll(/<!\[CDATA\[([\s\S]*?)\]\]>/g)].map((c) => c[1]).join('') : m[1];
}
