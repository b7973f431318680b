// Reads the core's answer (the layout is documented in src/wire.rs): status, content type,
// the route's own headers, the log line and its level, the body. Held to the Rust side by the
// golden answers in tests/fixtures/wire/ (tests/unit/wire.test.mjs).

const utf8 = new TextDecoder();
const latin1 = (bytes, start, end) => String.fromCharCode.apply(null, bytes.subarray(start, end));

/**
 * `{ status, type, headers, level, replayable, line, bodyStart }` of an encoded answer: `type`
 * is the content type's index, `headers` the route's own (name → value), `level` 0 (no line),
 * 1 (console.log) or 2 (console.error); the body is `bytes.subarray(bodyStart)`.
 */
export function readAnswer(bytes) {
  const status = bytes[0] | (bytes[1] << 8);
  const type = bytes[2];
  let i = 4;
  const headers = {};
  for (let n = bytes[3]; n > 0; n--) {
    const nameEnd = i + 1 + bytes[i];
    const name = latin1(bytes, i + 1, nameEnd);
    const valueEnd = nameEnd + 2 + (bytes[nameEnd] | (bytes[nameEnd + 1] << 8));
    headers[name] = latin1(bytes, nameEnd + 2, valueEnd);
    i = valueEnd;
  }
  const level = bytes[i] & 0x7f;
  const replayable = (bytes[i] & 0x80) !== 0;
  const lineLength = bytes[i + 1] | (bytes[i + 2] << 8) | (bytes[i + 3] << 16) | (bytes[i + 4] * 0x1000000);
  const lineEnd = i + 5 + lineLength;
  const line = level === 0 ? undefined : utf8.decode(bytes.subarray(i + 5, lineEnd));
  return { status, type, headers, level, replayable, line, bodyStart: lineEnd };
}

/**
 * The instruction to read a store key before the core answers (status 0): `{ id, withinMs,
 * key }`, or `undefined` when `bytes` is an answer.
 */
export function readInstruction(bytes) {
  if (bytes[0] !== 0 || bytes[1] !== 0) return undefined;
  const u32 = (i) => bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] * 0x1000000);
  return { id: u32(2), withinMs: u32(6), key: utf8.decode(bytes.subarray(10)) };
}

/** `handle`'s answer location: `address + length × 2³²`, split exactly (see src/wire.rs). */
export function splitLocation(at) {
  const address = at >>> 0;
  return { address, length: (at - address) / 4294967296 };
}

/** `handle`'s two numbers that are not a location. */
export const PENDING = 0;
export const NEEDS_REQUEST = 1;
