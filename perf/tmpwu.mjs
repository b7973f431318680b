import { Miniflare, convertV4MiniflareOptions } from 'miniflare';
const script = `
const busy = () => { const t = Date.now(); let x = 0; while (Date.now() - t < 5) x++; };
export default { async fetch(req, env, ctx) {
  const u = new URL(req.url);
  if (u.pathname === '/t0') ctx.waitUntil(new Promise(r => setTimeout(r, 0)).then(busy));
  if (u.pathname === '/t1') ctx.waitUntil(new Promise(r => setTimeout(r, 1)).then(busy));
  if (u.pathname === '/t2') ctx.waitUntil(new Promise(r => setTimeout(r, 2)).then(busy));
  if (u.pathname === '/fls') {
    const body = new TextEncoder().encode('ok');
    const { readable, writable } = new FixedLengthStream(body.length);
    const w = writable.getWriter();
    ctx.waitUntil(w.write(body).then(() => w.close()).then(busy));
    return new Response(readable, { headers: { 'content-type': 'text/plain' } });
  }
  return new Response('ok');
} }`;
const mf = new Miniflare(convertV4MiniflareOptions({ modules: true, script, compatibilityDate: '2026-11-01' }));
await mf.ready;
for (const p of ['/', '/t0', '/t1', '/t2', '/fls', '/', '/t0', '/t1', '/t2', '/fls']) {
  const xs = []; let cl;
  for (let i = 0; i < 60; i++) { const t = performance.now(); const r = await mf.dispatchFetch('http://x' + p); cl = r.headers.get('content-length'); await r.text(); xs.push(performance.now() - t); await new Promise(r => setTimeout(r, 30)); }
  xs.sort((a, b) => a - b); console.log(p, xs[30].toFixed(2), 'content-length', cl);
}
await mf.dispose();
