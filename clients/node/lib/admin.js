'use strict';
// AdminService's operator calls, mixed into Client (lib/client.js). With
// authentication on they need a token with the admin grant
// (PERMISSION_DENIED / ADMIN_DENIED otherwise). `namespace` '' is the
// token's first ('default' with auth off). They are retried on SHUTTING_DOWN
// only: a replayed forceUnlock could free the next holder's lock.

function toDate(ts) {
  if (!ts) return null;
  return new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6));
}

const adminCalls = {
  /** InspectSession: version, size, lock holder (never its token), waiters, idle expiry. */
  async inspect(sessionId, opts = {}) {
    const { namespace = '' } = opts;
    const res = await this._call(this._admin, 'InspectSession', { namespace, sessionId }, opts);
    const lock = res.lock
      ? {
        fencingToken: BigInt(res.lock.fencingToken),
        leaseExpiresAt: toDate(res.lock.leaseExpiresAt),
        heldSince: toDate(res.lock.heldSince),
        instance: res.lock.instance,
      }
      : null;
    return {
      exists: res.exists,
      version: BigInt(res.version),
      fieldCount: res.fieldCount,
      sizeBytes: res.sizeBytes,
      expiresAt: toDate(res.expiresAt),
      lock,
      waiters: res.waiters,
      oldestWaitMs: res.oldestWaitMs,
    };
  },

  /**
   * ForceUnlock: frees the lock whoever holds it (its holder then gets
   * LockLost). Resolves with the released holder's fencing token, or null
   * when nobody held the lock.
   */
  async forceUnlock(sessionId, opts = {}) {
    const { namespace = '' } = opts;
    const res = await this._call(this._admin, 'ForceUnlock', { namespace, sessionId }, opts);
    return res.released ? BigInt(res.releasedFencingToken) : null;
  },

  /** One page of ListSessions: { sessionIds, nextPageToken ('' at the end) }. */
  async listPage(prefix = '', opts = {}) {
    const { namespace = '', pageSize = 0, pageToken = '' } = opts;
    const req = { namespace, idPrefix: prefix, pageSize, pageToken };
    const res = await this._call(this._admin, 'ListSessions', req, opts);
    return { sessionIds: res.sessionIds, nextPageToken: res.nextPageToken };
  },

  /** Every id under `prefix`, all pages read, each once. */
  async listSessions(prefix = '', opts = {}) {
    const seen = new Set();
    let pageToken = '';
    do {
      const page = await this.listPage(prefix, { ...opts, pageToken });
      for (const id of page.sessionIds) seen.add(id);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return [...seen];
  },

  /**
   * PurgeSessions, page after page until done: deletes every session whose
   * id starts with `prefix` (not empty). Resolves with how many it deleted.
   */
  async purge(prefix, opts = {}) {
    const { namespace = '', pageSize = 0 } = opts;
    let deleted = 0;
    let pageToken = '';
    do {
      const req = { namespace, idPrefix: prefix, pageSize, pageToken };
      const res = await this._call(this._admin, 'PurgeSessions', req, opts);
      deleted += res.deleted;
      pageToken = res.nextPageToken;
    } while (pageToken);
    return deleted;
  },
};

module.exports = { adminCalls };
