// The client in a nutshell: locked read-modify-write, compare-and-set with
// retries, reads, typed errors.  node quickstart.js [host:port]
'use strict';
const { Client, SessionNotFound } = require('@sessiond/client');

async function main(target = '127.0.0.1:50051') {
  const client = new Client(target, { timeoutMs: 2_000, retries: 3 });
  const id = `quickstart-${process.pid}`;

  // Exclusive: lock, read, write with the token and release in one step.
  const turns = await client.withLock(id, async (session) => {
    const n = Number(session.fields.turns?.toString() ?? '0') + 1;
    session.set('turns', String(n));
    return n;
  }, { leaseMs: 2_000, waitMs: 1_000 });

  // Optimistic: compare-and-set on the version, retried on conflict.
  await client.updateWithRetry(id, (session) => {
    session.set('lastSeen', new Date().toISOString());
  }, { attempts: 5 });

  const s = await client.get(id, { consistency: 'strong' });
  console.log(`turns=${turns} version=${s.version} fields=${Object.keys(s.fields).sort()}`);

  await client.delete(id);
  try {
    await client.get(id);
  } catch (err) {
    if (!(err instanceof SessionNotFound)) throw err;
    console.log('deleted');
  }
  client.close();
}

main(...process.argv.slice(2)).catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
