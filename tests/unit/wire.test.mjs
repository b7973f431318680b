// The entry's reading of the core's answers (src/glue/wire.mjs) against the golden answers the
// core's encoder writes (tests/wire.rs checks them byte for byte on the Rust side).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readAnswer, readInstruction, splitLocation } from '../../src/glue/wire.mjs';

const golden = (name) => new Uint8Array(readFileSync(new URL(`../fixtures/wire/${name}.bin`, import.meta.url)));
const body = (bytes, answer) => new TextDecoder().decode(bytes.subarray(answer.bodyStart));

test('a 5xx with its own header and a UTF-8 log line', () => {
  const bytes = golden('error-502-retry-after');
  const answer = readAnswer(bytes);
  assert.deepEqual(
    { status: answer.status, type: answer.type, headers: answer.headers, level: answer.level, replayable: answer.replayable, line: answer.line },
    { status: 502, type: 0, headers: { 'retry-after': '300' }, level: 2, replayable: false, line: '{"a":"中"}' },
  );
  assert.equal(JSON.parse(body(bytes, answer)).retry_after, 300);
});

test('an answer whose line is printed after the background work has none', () => {
  const bytes = golden('xml-without-line');
  const answer = readAnswer(bytes);
  assert.deepEqual([answer.status, answer.type, answer.level, answer.line], [200, 2, 0, undefined]);
  assert.equal(body(bytes, answer), '<xml/>');
});

test('the health report is marked replayable', () => {
  const bytes = golden('health-replayable');
  const answer = readAnswer(bytes);
  assert.deepEqual([answer.replayable, answer.level, answer.line], [true, 1, '{"route":"/healthz"}']);
  assert.equal(body(bytes, answer), '{"ok":true}');
});

test('a plain-text success', () => {
  const bytes = golden('text-ok');
  const answer = readAnswer(bytes);
  assert.deepEqual([answer.status, answer.type, answer.level, body(bytes, answer)], [200, 1, 1, 'success']);
});

test('a location splits into the address and the length the core encoded', () => {
  for (const [address, length] of [[8, 0], [1114112, 73], [4294967295, 65536]]) {
    assert.deepEqual(splitLocation(address + length * 4294967296), { address, length });
  }
});

test('a read instruction carries the request, the time limit and the key', () => {
  assert.deepEqual(readInstruction(golden('read-instruction')), { id: 7, withinMs: 1000, key: 'rules:wx1' });
  assert.equal(readInstruction(golden('text-ok')), undefined, 'an answer is not a read instruction');
});
