// The runtime's floor for perf/cpu.mjs: answers "ok" to everything and logs nothing. It reads the
// request body, as any handler of a POST must: workerd closes a keep-alive connection whose request
// body was left unread, and a floor paying a new connection per POST would not be a floor.
export default {
  async fetch(request) {
    if (request.body) await request.arrayBuffer();
    return new Response('ok');
  },
};
