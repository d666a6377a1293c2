// Type-checked (never run) by test/types.test.js: tsc --noEmit must accept
// this file, including every @ts-expect-error line being an error.
import {
  Client,
  SessionDraft,
  SessiondError,
  SessionNotFound,
  VersionMismatch,
  LockHeld,
  LockLost,
  LockWaitTimeout,
  InvalidArgument,
  Overloaded,
  StoreUnavailable,
  Unavailable,
  status,
  increment,
  append,
  setIfAbsent,
  entries,
  type Session,
  type Stats,
} from '@sessiond/client';

async function usage(): Promise<void> {
  const client = new Client('127.0.0.1:50051', { timeoutMs: 2000, retries: 3 });
  await client.ready();

  const got = await client.get('user-1', { consistency: 'strong', minVersion: 3n });
  const version: bigint = got.version;
  const name: Buffer | undefined = got.fields['name'];
  const fromCache: boolean = got.fromCache;

  const o = await client.update('user-1', {
    ops: [increment('turns'), increment('n', -2n), append('history', 'hi', 20), setIfAbsent('flag', Buffer.from('1'))],
    idempotencyKey: 'evt-1',
  });
  const history: Buffer[] = entries(o.opValues[1]);
  await client.delete('user-1', { idempotencyKey: 'evt-2' });
  // @ts-expect-error keepLast is required
  append('history', 'hi');
  void history;
  const w = await client.update('user-1', { set: { a: 'text', b: Buffer.from([1]), c: new Uint8Array(2) }, delete: ['d'], expectedVersion: version });
  const newVersion: bigint = w.version;

  const lock = await client.lock('user-1', { leaseMs: 1000, waitMs: 0 });
  const fence: bigint = lock.fencingToken;
  await client.lock('user-2', { waitMs: 10_000, signal: AbortSignal.timeout(50) });
  const snapshot: Session | null = lock.session;
  await client.refresh('user-1', lock.lockToken, { leaseMs: 2000 });
  await client.update('user-1', { set: { a: 'x' }, lockToken: lock.lockToken, releaseLock: true });
  await client.unlock('user-1', lock.lockToken);
  const del: { deleted: boolean } = await client.delete('user-1', { expectedVersion: 0 });

  const reply: string = await client.withLock('user-1', async (session: SessionDraft) => {
    const prev: Buffer | undefined = session.get('n');
    session.set('n', String(Number(prev?.toString() ?? '0') + 1)).delete('old');
    session.signal?.throwIfAborted();
    return `v${session.version}`;
  }, { leaseMs: 300, waitMs: 10_000 });

  const n: number = await client.updateWithRetry('user-1', (session) => {
    session.set('x', 'y');
    return 1;
  }, { attempts: 5 });

  const stats: Stats = await client.stats();
  const hits: number = stats.cache?.hits ?? 0;
  const uptime: number = stats.uptimeMs;

  try {
    await client.get('nobody');
  } catch (err) {
    if (err instanceof SessionNotFound) {
      const code: number = err.code;
      const reason = err.reason;
      const md: Record<string, string> = err.metadata;
      void [code, reason, md, status.NOT_FOUND];
    } else if (err instanceof VersionMismatch) {
      const current: bigint | null = err.currentVersion;
      void current;
    } else if (err instanceof LockHeld || err instanceof LockLost || err instanceof LockWaitTimeout) {
      const e: SessiondError = err;
      void e;
    } else if (err instanceof InvalidArgument || err instanceof Overloaded) {
      void err.details;
    } else if (err instanceof StoreUnavailable) {
      const u: Unavailable = err;
      void u;
    }
  }

  // @ts-expect-error versions are bigint, not number
  const wrong: number = got.version;
  // @ts-expect-error consistency is 'cached' | 'strong'
  await client.get('user-1', { consistency: 'eventual' });
  // @ts-expect-error field values are bytes or strings
  await client.update('user-1', { set: { a: 42 } });
  // @ts-expect-error withLock needs a handler
  await client.withLock('user-1');

  void [name, fromCache, newVersion, fence, snapshot, del, reply, n, hits, uptime, wrong];
  client.close();
}

void usage;
