// The Worker's entry point. It reads what a request needs once (method, URL, a small declared
// body), calls the Rust core once, and builds the response once from the bytes it returns
// (status, headers, log line, body: see `Response::encode` in src/app.rs). When the core asks
// for a KV read first (`app::encode_read`), it makes the read and calls again with the result.
// Requests the core cannot answer without other I/O (KV writes, the WeChat API), and bodies that
// are large, undeclared or not POSTed, go to the core's async path with the original request.
// It decides nothing else.
import { handle, handle_body, handle_read, handle_async, scheduled, response_headers, wasm_memory, __wbg_reset_state } from './index.js';

const core = { handle, handle_body, handle_read, handle_async, scheduled, response_headers, wasm_memory, __wbg_reset_state };

/// The instance's memory (a new one after a trap resets the instance).
let memory;
/// The core's synchronous answer, read in place in its memory (see `answer` in src/glue/mod.rs):
/// valid until the next call into the core, so whatever outlives that is copied first.
function answer(at) {
  const address = at >>> 0;
  memory ??= core.wasm_memory();
  return new Uint8Array(memory.buffer, address, (at - address) / 4294967296);
}

/// Bodies up to this size (the callback's limit) are read here; the core checks every limit itself.
const FAST_BODY_LIMIT = 64 * 1024;
const NO_BODY = new Uint8Array(0);
const utf8 = new TextDecoder();
const latin1 = (bytes, start, end) => String.fromCharCode.apply(null, bytes.subarray(start, end));
/// The headers of every response, by content type (`Response::encode` sends the index).
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

function respond(out, target) {
  const status = out[0] | (out[1] << 8);
  let headers = HEADERS[out[2]];
  let i = 4;
  if (out[3] > 0) {
    headers = { ...headers };
    for (let n = out[3]; n > 0; n--) {
      const nameEnd = i + 1 + out[i];
      const name = latin1(out, i + 1, nameEnd);
      const valueEnd = nameEnd + 2 + (out[nameEnd] | (out[nameEnd + 1] << 8));
      headers[name] = latin1(out, nameEnd + 2, valueEnd);
      i = valueEnd;
    }
  }
  const level = out[i] & 0x7f;
  const lineEnd = i + 5 + (out[i + 1] | (out[i + 2] << 8) | (out[i + 3] << 16)) + out[i + 4] * 0x1000000;
  let line;
  if (level !== 0) {
    // Levels 3/4 mark a line that is not all ASCII; TextDecoder reads both kinds (and ASCII
    // faster than String.fromCharCode.apply over the bytes: perf/instructions.mjs).
    line = utf8.decode(out.subarray(i + 5, lineEnd));
    if (level === 2 || level === 4) console.error(line);
    else console.log(line);
  }
  // A copy: `out` is the core's memory, which its next call overwrites, and workerd's Response
  // keeps the bytes it is given rather than copying them (Body::extractBody in api/http.c++).
  const body = out.slice(lineEnd);
  if (out[i] & 0x80 && target !== undefined && line !== undefined && replays.size < MAX_REPLAYS) {
    replays.set(target, { status, headers, line, error: level === 2 || level === 4, body });
  }
  return new Response(body, { status, headers });
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
      let body;
      if (request.body !== null) {
        const declared = Number(request.headers.get('content-length') ?? NaN);
        if (method !== 'POST' || !(declared <= FAST_BODY_LIMIT)) return respond(await core.handle_async(request, env, ctx));
        body = new Uint8Array(await request.arrayBuffer());
      } else {
        const known = replays.get(target);
        if (known !== undefined) return replay(known);
      }
      let out = answer(body === undefined ? core.handle(env, target) : core.handle_body(env, target, body));
      if (out.length > 1 && out[0] === 0 && out[1] === 0) {
        // The core asks for a KV read first (the rules, once per isolate per 30 s).
        const started = Date.now();
        let read;
        try {
          const value = await env.WECHAT_KV.get(utf8.decode(out.subarray(2)));
          read = value === null ? '-' : `+${value}`;
        } catch {
          read = '!';
        }
        out = answer(core.handle_read(env, target, body ?? NO_BODY, read, Date.now() - started));
      }
      return respond(out.length > 0 ? out : await core.handle_async(request, env, ctx, body), target);
    } catch (e) {
      return failed(e);
    }
  },

  async scheduled(event, env, ctx) {
    try {
      await core.scheduled(event, env, ctx);
    } catch (e) {
      failed(e);
    }
  },
};
