#!/usr/bin/env node
// Sends a signed WeChat push to a running worker, as WeChat would, and prints the reply
// (decrypted in safe mode).
//
//   node scripts/send-test-message.mjs [--url http://127.0.0.1:8787/wechat] [--token T]
//        [--aes-key KEY --appid wx...] [--text "hello"] [--event subscribe] [--check-url]
//
// Defaults match .dev.vars.example. --check-url performs the GET URL check instead.
import { parseArgs } from 'node:util';
import { wechatPeer } from '../tests/support/wechat.mjs';

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

const peer = wechatPeer({ token: o.token, aesKey: o['aes-key'], appid: o.appid });
const ts = Math.floor(Date.now() / 1000);
const nonce = String(peer.randomNonce());

if (o['check-url']) {
  const echostr = String(Math.floor(Math.random() * 1e15));
  const res = await fetch(`${o.url}?${peer.urlCheckQuery(echostr, { timestamp: ts, nonce })}`);
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
const { query, body } = o['aes-key']
  ? peer.safePush(inner, { timestamp: ts, nonce })
  : { query: peer.plainQuery({ timestamp: ts, nonce }), body: inner };

const res = await fetch(`${o.url}?${query}`, { method: 'POST', body, headers: { 'content-type': 'text/xml' } });
const reply = await res.text();
console.log(`HTTP ${res.status}`);
const opened = peer.openReply(reply);
console.log(opened === reply ? reply : `(decrypted) ${opened}`);
process.exit(res.ok ? 0 : 1);
