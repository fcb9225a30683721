// The queue-amplification attack (docs/reliability.md), against a running server.
// node --experimental-websocket amplify.mjs PORT PID AGENT_TOKEN
const [port, pid, token] = process.argv.slice(2);
import { readFileSync } from 'node:fs';
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
const open = (path) => new Promise((ok, bad) => { const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`); ws.onopen = () => ok(ws); ws.onerror = bad; });
const next = (ws, type) => new Promise((ok) => { const f = (e) => { const m = JSON.parse(e.data); if (!type || m.type === type) { ws.removeEventListener('message', f); ok(m); } }; ws.addEventListener('message', f); });
const before = rss();
const agent = await open('/ws/agent');
let agentFrames = 0, agentBytes = 0;
agent.addEventListener('message', (e) => { agentFrames++; agentBytes += e.data.length; });
agent.send(JSON.stringify({ type: 'login', token, auto_assign: false }));
await new Promise((r) => setTimeout(r, 500));
const long = '转人工 ' + '我的订单一直没有发货请帮我看看'.repeat(130);
const shoppers = [];
for (let i = 0; i < 300; i++) {
  const ws = await open('/ws/chat?store=demo');
  ws.send(JSON.stringify({ type: 'hello' })); await next(ws, 'welcome');
  ws.send(JSON.stringify({ type: 'message', id: 'h', text: long.slice(0, 2000) })); await next(ws, 'reply');
  shoppers.push(ws);
}
const afterHandoffs = rss();
let peak = afterHandoffs, hellos = 0; const t0 = Date.now(); const frames0 = agentFrames;
const sampler = setInterval(() => { peak = Math.max(peak, rss()); }, 200);
await Promise.all(Array.from({ length: 10 }, async () => {
  while (Date.now() - t0 < 6000) {
    const ws = await open('/ws/chat?store=demo');
    ws.send(JSON.stringify({ type: 'hello' })); await next(ws, 'welcome'); hellos++;
    ws.close();
  }
}));
clearInterval(sampler);
console.log(JSON.stringify({ rss_mib_before: before.toFixed(0), rss_mib_after_300_handoffs: afterHandoffs.toFixed(0), rss_mib_peak_during_hello_loop: peak.toFixed(0), hellos, agent_frames_during_loop: agentFrames - frames0, agent_frames_total: agentFrames, agent_mib_received: (agentBytes / 1048576).toFixed(1) }));
process.exit(0);
