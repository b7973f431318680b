#!/usr/bin/env node
// Sends a signed WeChat push to a running worker, as WeChat would, and prints the reply
// (decrypted in safe mode).
//
//   node scripts/send-test-message.mjs [--url http://127.0.0.1:8787/wechat] [--token T]
//        [--aes-key KEY --appid wx...] [--text "hello"] [--event subscribe] [--check-url]
//
// Defaults match .dev.vars.example. --check-url performs the GET URL check instead.
import { createHash, createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

const { values: o } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8787/wechat' },
    token: { type: 'string', default: 'dev-token' },
    'aes-key': { type: 'string' },
    appid: { type: 'string', default: 'wx5823bf96d3bd56c7' },
    text: { type: 'string', default: '你好，我需要人工客服' },
    event: { type: 'string' },
    'check-url': { type: 'boolean', default: false },
  },
});

const sha1 = (...parts) => createHash('sha1').update(parts.sort().join('')).digest('hex');
const ts = String(Math.floor(Date.now() / 1000));
const nonce = String(Math.floor(Math.random() * 1e9));

if (o['check-url']) {
  const echostr = String(Math.floor(Math.random() * 1e18));
  const res = await fetch(`${o.url}?signature=${sha1(o.token, ts, nonce)}&timestamp=${ts}&nonce=${nonce}&echostr=${echostr}`);
  const body = await res.text();
  console.log(`${res.status} ${body === echostr ? 'echostr matches' : `unexpected body: ${body}`}`);
  process.exit(res.ok && body === echostr ? 0 : 1);
}

const inner = `<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[oTestUser]]></FromUserName>` +
  `<CreateTime>${ts}</CreateTime>` +
  (o.event
    ? `<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[${o.event}]]></Event>`
    : `<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[${o.text}]]></Content><MsgId>${Date.now()}</MsgId>`) +
  `</xml>`;

let query = `signature=${sha1(o.token, ts, nonce)}&timestamp=${ts}&nonce=${nonce}&openid=oTestUser`;
let body = inner;
let key;
if (o['aes-key']) {
  key = Buffer.from(o['aes-key'] + '=', 'base64');
  const msg = Buffer.from(inner);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(msg.length);
  const plain = Buffer.concat([randomBytes(16), len, msg, Buffer.from(o.appid)]);
  const pad = 32 - (plain.length % 32);
  const c = createCipheriv('aes-256-cbc', key, key.subarray(0, 16)).setAutoPadding(false);
  const enc = Buffer.concat([c.update(Buffer.concat([plain, Buffer.alloc(pad, pad)])), c.final()]).toString('base64');
  query += `&encrypt_type=aes&msg_signature=${sha1(o.token, ts, nonce, enc)}`;
  body = `<xml><ToUserName><![CDATA[gh_test]]></ToUserName><Encrypt><![CDATA[${enc}]]></Encrypt></xml>`;
}

const res = await fetch(`${o.url}?${query}`, { method: 'POST', body, headers: { 'content-type': 'text/xml' } });
let reply = await res.text();
console.log(`HTTP ${res.status}`);
const enc = reply.match(/<Encrypt><!\[CDATA\[(.*?)\]\]><\/Encrypt>/);
if (enc && key) {
  const d = createDecipheriv('aes-256-cbc', key, key.subarray(0, 16)).setAutoPadding(false);
  const p = Buffer.concat([d.update(Buffer.from(enc[1], 'base64')), d.final()]);
  reply = `(decrypted) ${p.subarray(20, 20 + p.readUInt32BE(16)).toString()}`;
}
console.log(reply);
process.exit(res.ok ? 0 : 1);
