// The Worker's entry point. It reads what a request needs once (method, URL, a small declared
// body), calls the Rust core once, and builds the response once from the bytes it returns
// (./wire.mjs reads them). The core answers at once when it needs no I/O; asks the entry to read
// a store key within a time limit and resumes with the result; or hands back the promise of its
// answer. The admin API and bodies the entry does not read go to the core with the whole
// request. It decides nothing.
import { handle, handle_request, resume, take_pending, scheduled, response_headers, wasm_memory, __wbg_reset_state } from './index.js';
import { readAnswer, readInstruction, splitLocation, PENDING, NEEDS_REQUEST } from './wire.mjs';

const core = { handle, handle_request, resume, take_pending, scheduled, response_headers, wasm_memory, __wbg_reset_state };

/// The instance's memory (a new one after a trap resets the instance).
let memory;
/// `handle`'s answer, read in place in the core's memory: valid until the next call into the
/// core, so whatever outlives that is copied first.
function inPlace(at) {
  const { address, length } = splitLocation(at);
  memory ??= core.wasm_memory();
  return new Uint8Array(memory.buffer, address, length);
}

/// Bodies up to this size (the callback's limit) are read here; the core checks every limit itself.
const FAST_BODY_LIMIT = 64 * 1024;
const NO_BODY = new Uint8Array(0);
/// The headers of every response, by content type (the answer sends the index).
const HEADERS = JSON.parse(core.response_headers());
/// Answers the core marked replayable (the health report), by `"<method> <url>"`: the same
/// request gets the same response and log line for the isolate's lifetime. A few URLs at most.
const replays = new Map();
const MAX_REPLAYS = 8;

function replay({ status, headers, line, error, body }) {
  if (error) console.error(line);
  else console.log(line);
  return new Response(body, { status, headers });
}

function respond(bytes, target) {
  const answer = readAnswer(bytes);
  let headers = HEADERS[answer.type];
  if (Object.keys(answer.headers).length > 0) headers = { ...headers, ...answer.headers };
  if (answer.level === 2) console.error(answer.line);
  else if (answer.level === 1) console.log(answer.line);
  // A copy: `bytes` may be the core's memory, which its next call overwrites, and workerd's
  // Response keeps the bytes it is given rather than copying them.
  const body = bytes.slice(answer.bodyStart);
  if (answer.replayable && target !== undefined && answer.line !== undefined && replays.size < MAX_REPLAYS) {
    replays.set(target, { status: answer.status, headers, line: answer.line, error: answer.level === 2, body });
  }
  return new Response(body, { status: answer.status, headers });
}

/// A read the core asked for: `"+"` and the value, `"-"` absent, `"!"` failed, `"~"` not
/// within `ms` (the core's limit; the read is then left to finish on its own).
async function readWithin(kv, key, ms) {
  let timer;
  const late = new Promise((resolve) => { timer = setTimeout(resolve, ms, '~'); });
  const read = kv.get(key).then((value) => (value === null ? '-' : `+${value}`), () => '!');
  try {
    return await Promise.race([read, late]);
  } finally {
    clearTimeout(timer);
  }
}

/// A JS exception out of the core. A trap (a Rust panic) leaves the instance unusable: a fresh
/// one serves the next request.
function failed(e) {
  const trap = e instanceof WebAssembly.RuntimeError;
  if (trap) {
    core.__wbg_reset_state();
    memory = undefined;
  }
  console.error(JSON.stringify({ route: 'entry', status: 500, outcome: trap ? 'internal_error: wasm trap' : 'internal_error: runtime' }));
  return new Response('{"error":"internal_error","message":"internal error"}', {
    status: 500,
    headers: { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' },
  });
}

export default {
  async fetch(request, env, ctx) {
    try {
      const method = request.method;
      const target = `${method} ${request.url}`;
      let body = NO_BODY;
      if (request.body !== null) {
        const declared = Number(request.headers.get('content-length') ?? NaN);
        if (method !== 'POST' || !(declared <= FAST_BODY_LIMIT)) return respond(await core.handle_request(request, env, ctx));
        try {
          body = new Uint8Array(await request.arrayBuffer());
        } catch {
          // The client went away mid-body: the core answers it (a client error).
          return respond(await core.handle_request(request, env, ctx));
        }
      } else {
        const known = replays.get(target);
        if (known !== undefined) return replay(known);
      }
      let at = core.handle(env, ctx, target, body);
      for (;;) {
        if (at === NEEDS_REQUEST) return respond(await core.handle_request(request, env, ctx, body === NO_BODY ? undefined : body));
        if (at === PENDING) return respond(await core.take_pending());
        const out = inPlace(at);
        const read = readInstruction(out);
        if (read === undefined) return respond(out, target);
        // The store is the WECHAT_KV binding (the core's only key-value store).
        at = core.resume(read.id, await readWithin(env.WECHAT_KV, read.key, read.withinMs));
      }
    } catch (e) {
      return failed(e);
    }
  },

  async scheduled(event, env, ctx) {
    try {
      await core.scheduled(env);
    } catch (e) {
      failed(e);
    }
  },
};
