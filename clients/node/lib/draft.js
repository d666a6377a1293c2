'use strict';
// The session as a handler of withLock / updateWithRetry sees it: the snapshot
// read when the lock was taken (or before the compare-and-set), plus the
// changes the handler asks for. Nothing is sent until the handler returns.

function toBuffer(value, name) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  throw new TypeError(`field ${JSON.stringify(name)}: value must be a Buffer, Uint8Array or string`);
}

class SessionDraft {
  constructor(sessionId, snapshot, lock) {
    /** The session id. */
    this.sessionId = sessionId;
    /** Whether the session existed when it was read. */
    this.exists = snapshot !== null;
    /** Field name -> value, as read (later set/delete calls do not change it). */
    this.fields = Object.freeze({ ...(snapshot ? snapshot.fields : {}) });
    /** The version read; 0n when the session did not exist. */
    this.version = snapshot ? snapshot.version : 0n;
    /** The session as read (createdAt, updatedAt, expiresAt ...); null when it did not exist. */
    this.snapshot = snapshot;
    /** withLock only: the lock token, fencing token and an AbortSignal that fires when the lock is lost. */
    this.lockToken = lock ? lock.lockToken : null;
    this.fencingToken = lock ? lock.fencingToken : null;
    this.signal = lock ? lock.signal : null;
    /** withLock only: the grant as lock() resolved it (supersededPayloads, replayed ...). */
    this.lock = lock ? lock.grant : null;
    this._set = new Map();
    this._delete = new Set();
  }

  /** The value of a field with this handler's pending changes applied. */
  get(name) {
    if (this._set.has(name)) return this._set.get(name);
    if (this._delete.has(name)) return undefined;
    return Object.prototype.hasOwnProperty.call(this.fields, name) ? this.fields[name] : undefined;
  }

  /** Sets a field (Buffer, Uint8Array or UTF-8 string) when the handler returns. */
  set(name, value) {
    if (typeof name !== 'string') throw new TypeError('field name must be a string');
    this._delete.delete(name);
    this._set.set(name, toBuffer(value, name));
    return this;
  }

  /** Removes a field when the handler returns (absent names are ignored). */
  delete(name) {
    if (typeof name !== 'string') throw new TypeError('field name must be a string');
    this._set.delete(name);
    this._delete.add(name);
    return this;
  }

  /** True when set() or delete() was called. */
  get changed() {
    return this._set.size > 0 || this._delete.size > 0;
  }

  /** The pending changes in the shape of Client#update's options. */
  changes() {
    return { set: Object.fromEntries(this._set), delete: [...this._delete] };
  }
}

module.exports = { SessionDraft, toBuffer };
