// Type declarations of @sessiond/client (hand-written; the code is plain CommonJS).
/// <reference types="node" />

import type { ChannelCredentials, ChannelOptions, Interceptor, status as GrpcStatus } from '@grpc/grpc-js';

/** Field name -> value. Values are opaque bytes. */
export type Fields = Record<string, Buffer>;
/** What may be written to a field: bytes, or a string stored as UTF-8. */
export type FieldValue = Buffer | Uint8Array | string;
/** A uint64 argument: a bigint, a safe integer or a decimal string. */
export type Uint64 = bigint | number | string;

export interface ClientOptions {
  /** Deadline of each call in ms (LockSession: plus its waitMs). Default 5000. */
  timeoutMs?: number;
  /** Extra attempts after UNAVAILABLE, for calls safe to retry (see README). Default 3. */
  retries?: number;
  /** Default: insecure (plaintext). */
  credentials?: ChannelCredentials;
  /** Metadata sent with every call, e.g. { authorization: 'Bearer ...' }. */
  metadata?: Record<string, string>;
  /** grpc-js channel options. */
  channelOptions?: ChannelOptions;
  /** grpc-js client interceptors, run on every call. */
  interceptors?: Interceptor[];
}

export interface CallOptions {
  /** Overrides the client's timeoutMs for this call. */
  timeoutMs?: number;
  /** Overrides the client's retries for this call. */
  retries?: number;
  /** Cancels the call (rejecting with the signal's reason); a queued LockSession leaves the queue. */
  signal?: AbortSignal;
}

export interface Session {
  sessionId: string;
  fields: Fields;
  /** 1 at creation, +1 per write, never reused. Exact 64-bit value. */
  version: bigint;
  createdAt: Date | null;
  updatedAt: Date | null;
  expiresAt: Date | null;
}

export interface GetOptions extends CallOptions {
  /** 'cached' (default) may be served from the instance's cache; 'strong' reads the store. */
  consistency?: 'cached' | 'strong';
  /** Never return a version older than this (read-your-writes). */
  minVersion?: Uint64;
}

export interface GetResult extends Session {
  fromCache: boolean;
}

export interface LockOptions extends CallOptions {
  /** Lease in ms; 0 or omitted = the server's default. */
  leaseMs?: number;
  /** 0 (default) = try once, LockHeld when held; > 0 = wait in the FIFO queue. */
  waitMs?: number;
  /** Checked before the lock is tried or queued for: RateLimited when it refuses. */
  rateLimit?: RateLimitOptions;
  /** 'FIFO' (default); 'LATEST_WINS' or 'DEBOUNCE': the newest waiter of the burst supersedes the older (Superseded). */
  policy?: 'FIFO' | 'LATEST_WINS' | 'DEBOUNCE';
  /** DEBOUNCE's quiet period: granted only after this long without a newer waiter. */
  debounceMs?: number;
  /** Attached to the wait (LATEST_WINS, DEBOUNCE): handed to the waiter finally granted. */
  payload?: Uint8Array | string;
  /** A repeat within the server's window gets the first grant's answer (replayed: true). */
  idempotencyKey?: string;
}

export interface LockResult {
  lockToken: string;
  fencingToken: bigint;
  leaseExpiresAt: Date | null;
  /** The session when the lock was taken (a STRONG read); null when it does not exist. */
  session: Session | null;
  /** The payloads of the waiters this grant superseded, oldest first. */
  supersededPayloads: Buffer[];
  /** How many older payloads the server dropped to bound supersededPayloads. */
  supersededDropped: number;
  /** True when this answers an earlier lock with the same idempotencyKey (no new grant). */
  replayed: boolean;
}

export interface UpdateOptions extends CallOptions {
  set?: Record<string, FieldValue>;
  delete?: string[];
  /** Remove every field not in `set`. */
  replace?: boolean;
  lockToken?: string;
  /** Compare-and-set; 0 = create only. Omit for no check. */
  expectedVersion?: Uint64;
  /** Release the lock in the same atomic step (needs lockToken). */
  releaseLock?: boolean;
  /** Field operations (increment, append, setIfAbsent), in the same atomic step. */
  ops?: FieldOp[];
  /** A repeat within the server's window gets the first call's answer. */
  idempotencyKey?: string;
}

/** One field operation; build it with increment, append or setIfAbsent. */
export type FieldOp =
  | { field: string; increment: string }
  | { field: string; append: { value: Buffer; keepLast: number } }
  | { field: string; setIfAbsent: Buffer };

/** Adds `by` (signed 64-bit) to the integer the field holds (0 when absent). */
export declare function increment(field: string, by?: bigint | number | string): FieldOp;
/** Appends to the list the field holds, keeping its last `keepLast` entries. */
export declare function append(field: string, value: FieldValue, keepLast: number): FieldOp;
/** Sets the field unless it exists. */
export declare function setIfAbsent(field: string, value: FieldValue): FieldOp;
/** The entries of a list field (a sessiond.v1.FieldList), oldest first. */
export declare function entries(value: Uint8Array): Buffer[];

export interface UpdateResult {
  version: bigint;
  expiresAt: Date | null;
  /** One per op, in order: the field's value after the write. */
  opValues: Buffer[];
}

export interface DeleteOptions extends CallOptions {
  lockToken?: string;
  expectedVersion?: Uint64;
  releaseLock?: boolean;
  /** A repeat within the server's window gets the first call's answer. */
  idempotencyKey?: string;
}

export interface RefreshOptions extends CallOptions {
  /** New lease from now in ms; 0 = the server's default. */
  leaseMs?: number;
}

export interface RateLimitOptions {
  /** The limit's name; '' or left out = 'default'. */
  name?: string;
  /** Units a second on average (> 0); left out = the server's default. */
  perSecond?: number;
  /** Units admitted at once after an idle spell; left out = the server's default. */
  burst?: number | bigint;
  /** Units this call takes (1..=burst); default 1. */
  cost?: number | bigint;
  /** The namespace's limit rather than the session's (sessionId is not read). */
  namespaceScope?: boolean;
}

export interface CheckRateOptions extends CallOptions, RateLimitOptions {}

export interface WithLockOptions {
  leaseMs?: number;
  waitMs?: number;
  timeoutMs?: number;
  /** As in LockOptions. */
  rateLimit?: RateLimitOptions;
  policy?: 'FIFO' | 'LATEST_WINS' | 'DEBOUNCE';
  debounceMs?: number;
  payload?: Uint8Array | string;
  idempotencyKey?: string;
  /** Cancels the wait for the lock (not the handler: use session.signal there). */
  signal?: AbortSignal;
}

export interface UpdateWithRetryOptions {
  /** Tries in all (default 10). */
  attempts?: number;
  timeoutMs?: number;
}

/** The session as a withLock / updateWithRetry handler sees it. */
export declare class SessionDraft {
  readonly sessionId: string;
  /** Whether the session existed when it was read. */
  readonly exists: boolean;
  /** The fields as read; set()/delete() do not change it. */
  readonly fields: Readonly<Fields>;
  /** The version read; 0n when the session did not exist. */
  readonly version: bigint;
  readonly snapshot: Session | null;
  /** withLock only (null in updateWithRetry). */
  readonly lockToken: string | null;
  readonly fencingToken: bigint | null;
  /** withLock only: aborts (reason: a LockLost) when a lease refresh finds the lock lost. */
  readonly signal: AbortSignal | null;
  /** withLock only: the grant (supersededPayloads, replayed ...). */
  readonly lock: LockResult | null;
  /** A field's value with the pending changes applied. */
  get(name: string): Buffer | undefined;
  set(name: string, value: FieldValue): this;
  delete(name: string): this;
  readonly changed: boolean;
  changes(): { set: Record<string, Buffer>; delete: string[] };
}

export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface Stats {
  instanceId: string;
  version: string;
  uptimeMs: number;
  storeBackend: string;
  cache: {
    entries: number;
    weightedBytes: number;
    hits: number;
    misses: number;
    hitRate: number;
    evictions: number;
    invalidationsReceived: number;
    bypasses: number;
    feedHealthy: boolean;
    feedLosses: number;
  } | null;
  locks: {
    acquisitions: number;
    contended: number;
    waitsGranted: number;
    waitsAbandoned: number;
    waitingNow: number;
    leaseExpiries: number;
    staleTokenRejections: number;
    heldRejections: number;
    waitMs: LatencySummary | null;
    /** Locks released by ForceUnlock or PurgeSessions on this instance. */
    forcedReleases: number;
    /** Queued callers ended Superseded by a newer waiter of their burst. */
    superseded: number;
    /** LockSession calls answered from an earlier grant's idempotency key. */
    replayed: number;
  } | null;
  store: {
    healthy: boolean;
    errors: number;
    poolSize: number;
    poolIdle: number;
    /** What an acknowledged write survives: 'aof-always', 'aof-everysec', 'aof-no', 'none', 'unknown'; 'fsync' on the embedded store. */
    durability: string;
    /** What a write waits for before it is acknowledged: 'none', 'aof', 'replicas:N'; 'fsync' on the embedded store. */
    durabilityWait: string;
    /** Settings that can lose acknowledged writes or evict sessions, one sentence each. */
    durabilityWarnings: string[];
    durabilityFailures: number;
    /** Times the store was found to have lost its data (sessions and versions gone). */
    dataLosses: number;
  } | null;
  rpcs: Array<{ method: string; calls: number; errors: number; latencyUs: LatencySummary | null }>;
  /** The server's per-namespace quotas (0: none) and this instance's QUOTA_EXCEEDED refusals. */
  quotas: {
    maxSessionsPerNamespace: number;
    maxBytesPerNamespace: number;
    sessionRefusals: number;
    byteRefusals: number;
  } | null;
  /** WatchSession on this instance. */
  watch: {
    watchers: number;
    eventsSent: number;
    lagged: number;
  } | null;
}

export interface WatchOptions {
  /** 0 (the default): begin with a snapshot; else resume after this version. */
  afterVersion?: bigint | number;
  /** Whether 'changed' events carry the new values. */
  includeValues?: boolean;
  /** Ends the watch (the iterator then throws the signal's reason). */
  signal?: AbortSignal;
}

/** One event of a watch; the fields present depend on `kind`. */
export interface WatchEvent {
  kind:
    | 'snapshot'
    | 'resumed'
    | 'changed'
    | 'lock_acquired'
    | 'lock_released'
    | 'lock_expired'
    | 'lock_forced'
    | 'deleted'
    | 'idle_expired';
  /** The session's version once it happened: pass the last one read as afterVersion to resume. */
  version: bigint;
  /** snapshot: the session, null when it does not exist. */
  session?: Session | null;
  /** snapshot: it replaces a resume that could not be served. */
  resync?: boolean;
  /** snapshot (the holder's, null when free) and lock events. */
  fencingToken?: bigint | null;
  /** snapshot and lock_acquired. */
  leaseExpiresAt?: Date | null;
  /** changed */
  setFields?: string[];
  removedFields?: string[];
  values?: Record<string, Buffer>;
  replaced?: boolean;
  created?: boolean;
  expiresAt?: Date | null;
}

/** Options of AdminService's operator calls. */
export interface AdminOptions extends CallOptions {
  /** '' = the token's first namespace ('default' with authentication off). */
  namespace?: string;
}

export interface ListOptions extends AdminOptions {
  /** 0 = 100; at most 1000. */
  pageSize?: number;
  pageToken?: string;
}

/** AdminService.InspectSession: a session and its lock, for operators. */
export interface Inspection {
  exists: boolean;
  version: bigint;
  fieldCount: number;
  sizeBytes: number;
  expiresAt: Date | null;
  /** Who holds the lock (never its token); null when nobody does. */
  lock: {
    fencingToken: bigint;
    leaseExpiresAt: Date | null;
    heldSince: Date | null;
    /** The granting instance: the first 16 characters of its GetStats instanceId. */
    instance: string;
  } | null;
  waiters: number;
  /** How long the first waiter has been queued; 0 when nobody waits. */
  oldestWaitMs: number;
}

export declare class Client {
  constructor(target: string, options?: ClientOptions);
  readonly target: string;
  readonly timeoutMs: number;
  readonly retries: number;
  ready(timeoutMs?: number): Promise<void>;
  close(): void;
  get(sessionId: string, opts?: GetOptions): Promise<GetResult>;
  lock(sessionId: string, opts?: LockOptions): Promise<LockResult>;
  update(sessionId: string, opts?: UpdateOptions): Promise<UpdateResult>;
  delete(sessionId: string, opts?: DeleteOptions): Promise<{ deleted: boolean }>;
  unlock(sessionId: string, lockToken: string, opts?: CallOptions): Promise<void>;
  refresh(sessionId: string, lockToken: string, opts?: RefreshOptions): Promise<{ leaseExpiresAt: Date | null }>;
  checkRate(sessionId: string, opts?: CheckRateOptions): Promise<{ remaining: number; resetAfterMs: number }>;
  stats(opts?: CallOptions): Promise<Stats>;
  watch(sessionId: string, opts?: WatchOptions): AsyncGenerator<WatchEvent, void, undefined>;
  inspect(sessionId: string, opts?: AdminOptions): Promise<Inspection>;
  forceUnlock(sessionId: string, opts?: AdminOptions): Promise<bigint | null>;
  listPage(prefix?: string, opts?: ListOptions): Promise<{ sessionIds: string[]; nextPageToken: string }>;
  listSessions(prefix?: string, opts?: AdminOptions & { pageSize?: number }): Promise<string[]>;
  purge(prefix: string, opts?: AdminOptions & { pageSize?: number }): Promise<number>;
  withLock<T>(sessionId: string, fn: (session: SessionDraft) => T | Promise<T>, opts?: WithLockOptions): Promise<T>;
  updateWithRetry<T>(
    sessionId: string,
    fn: (session: SessionDraft) => T | Promise<T>,
    opts?: UpdateWithRetryOptions,
  ): Promise<T>;
}

export type Reason =
  | 'INVALID_SESSION_ID'
  | 'INVALID_FIELD'
  | 'INVALID_LEASE'
  | 'INVALID_WAIT'
  | 'INVALID_LOCK_TOKEN'
  | 'LIMIT_EXCEEDED'
  | 'SESSION_NOT_FOUND'
  | 'VERSION_MISMATCH'
  | 'LOCK_HELD'
  | 'LOCK_LOST'
  | 'LOCK_WAIT_TIMEOUT'
  | 'OVERLOADED'
  | 'QUOTA_EXCEEDED'
  | 'STORE_UNAVAILABLE'
  | 'SHUTTING_DOWN'
  | 'UNAUTHENTICATED'
  | 'NAMESPACE_DENIED'
  | 'ADMIN_DENIED'
  | 'INVALID_PAGE_TOKEN';

export declare class SessiondError extends Error {
  /** Numeric gRPC status code. */
  readonly code: GrpcStatus;
  /** e.g. "FAILED_PRECONDITION". */
  readonly codeName: string;
  /** google.rpc.ErrorInfo reason (domain "sessiond"); null when the status had none. */
  readonly reason: Reason | (string & {}) | null;
  /** ErrorInfo.metadata. */
  readonly metadata: Record<string, string>;
  /** The server's status message. */
  readonly details: string;
  /**
   * True when an earlier attempt of this call failed with an UNAVAILABLE of
   * unknown outcome (anything but SHUTTING_DOWN) and was retried: a
   * VersionMismatch or LockLost may then answer our own earlier attempt.
   */
  readonly maybeApplied: boolean;
}
export declare class InvalidArgument extends SessiondError {}
export declare class SessionNotFound extends SessiondError {}
export declare class VersionMismatch extends SessiondError {
  /** From ErrorInfo.metadata.current_version, when present. */
  readonly currentVersion: bigint | null;
}
export declare class LockHeld extends SessiondError {}
export declare class LockLost extends SessiondError {}
export declare class LockWaitTimeout extends SessiondError {}
/** ABORTED / SUPERSEDED: a newer waiter of the session's burst took this waiter's turn. */
export declare class Superseded extends SessiondError {}
export declare const TurnPolicy: Readonly<{ FIFO: 'FIFO'; LATEST_WINS: 'LATEST_WINS'; DEBOUNCE: 'DEBOUNCE' }>;
/** The call's own deadline passed (no sessiond reason). */
export declare class DeadlineExceeded extends SessiondError {}
export declare class Overloaded extends SessiondError {}
/**
 * RESOURCE_EXHAUSTED / QUOTA_EXCEEDED: the write would grow the namespace beyond
 * a quota; nothing was written. Not retried: delete sessions, write smaller ones,
 * or have the quota raised.
 */
export declare class RateLimited extends SessiondError {
  /** The limit's name. */
  readonly limit: string | null;
  /** When the same call would be admitted, in milliseconds. */
  readonly retryAfterMs: number | null;
}
/** RESOURCE_EXHAUSTED / WATCH_LAGGED: the watch fell behind; watch again with afterVersion. */
export declare class WatchLagged extends SessiondError {}
export declare class QuotaExceeded extends SessiondError {
  /** "sessions" or "bytes". */
  readonly quota: string | null;
  /** The quota's value. */
  readonly limit: bigint | null;
  /** The namespace's usage of that quota before the write. */
  readonly usage: bigint | null;
}
/** Any UNAVAILABLE, including transport failures; a write's outcome is then unknown (but see ShuttingDown). */
export declare class Unavailable extends SessiondError {}
export declare class StoreUnavailable extends Unavailable {}
/** The instance is stopping and did not carry out the call: any call may be retried. */
export declare class ShuttingDown extends Unavailable {}
/** No or unknown bearer token (authentication on). */
export declare class Unauthenticated extends SessiondError {}
/** The token does not grant the namespace asked for (reason NAMESPACE_DENIED). */
export declare class PermissionDenied extends SessiondError {}

export declare const status: typeof GrpcStatus;
