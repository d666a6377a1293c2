const { startServer, uniqueId } = require('./test/helpers/server');
const sd = require('.');
(async () => {
  const s = await startServer();
  const client = new sd.Client(s.target);
  const other = new sd.Client(s.target);
  let held_after = 0, n = 40;
  for (let i = 0; i < n; i++) {
    const id = uniqueId('abandon');
    const held = await client.lock(id, { leaseMs: 5000 });
    const ac = new AbortController();
    const waiter = client.lock(id, { waitMs: 10_000, signal: ac.signal }).then(() => 'granted', (e) => e);
    while ((await client.stats()).locks.waitingNow < 1) await new Promise((r) => setTimeout(r, 5));
    ac.abort(); await waiter;
    await client.unlock(id, held.lockToken);
    const next = await other.lock(id, { waitMs: 0 }).catch(e => e);
    if (next instanceof Error) { held_after++; console.log(i, next.reason); }
    else await other.unlock(id, next.lockToken);
  }
  console.log('LOCK_HELD after abandon+unlock:', held_after, '/', n, (await client.stats()).locks);
  client.close(); other.close(); await s.stop();
})();
