'use strict';
// Typed errors. Every error status of sessiond carries `grpc-status-details-bin`
// trailing metadata: a serialized google.rpc.Status whose details hold a
// google.rpc.ErrorInfo (domain "sessiond") with a machine-readable `reason`.
// The class is chosen by that reason; an error without it (a transport failure,
// a deadline hit on the client, a proxy in the way) is classed by its gRPC code.

const protobuf = require('protobufjs');
const { status: Code } = require('@grpc/grpc-js');

// The three messages needed to read the details, from googleapis'
// google/rpc/status.proto and error_details.proto and protobuf's any.proto.
const root = protobuf.parse(`
  syntax = "proto3";
  package google.rpc;
  message Any { string type_url = 1; bytes value = 2; }
  message Status { int32 code = 1; string message = 2; repeated Any details = 3; }
  message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
`, { keepCase: true }).root;
const StatusMsg = root.lookupType('google.rpc.Status');
const ErrorInfoMsg = root.lookupType('google.rpc.ErrorInfo');
const ERROR_INFO_URL = 'type.googleapis.com/google.rpc.ErrorInfo';
const DOMAIN = 'sessiond';

const CODE_NAMES = Object.fromEntries(Object.entries(Code).map(([name, n]) => [n, name]));

class SessiondError extends Error {
  constructor(message, { code, reason = null, metadata = {}, details = '', maybeApplied = false, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    /** Numeric gRPC status code (see `status` of @grpc/grpc-js). */
    this.code = code;
    /** Its name, e.g. "FAILED_PRECONDITION". */
    this.codeName = CODE_NAMES[code] ?? String(code);
    /** ErrorInfo.reason, e.g. "LOCK_HELD"; null when the status carried none. */
    this.reason = reason;
    /** ErrorInfo.metadata, e.g. { limit: ... } or { current_version: ... }. */
    this.metadata = metadata;
    /** The server's status message. */
    this.details = details;
    /**
     * True when an earlier attempt of this call failed with an UNAVAILABLE of
     * unknown outcome (anything but SHUTTING_DOWN) and was retried: it may have
     * been applied, so a VersionMismatch or LockLost now may answer our own
     * earlier attempt. Read the session again before deciding.
     */
    this.maybeApplied = maybeApplied;
  }
}

class InvalidArgument extends SessiondError {}
class SessionNotFound extends SessiondError {}
class VersionMismatch extends SessiondError {
  /** The session's version when the write was refused, when the server said. */
  get currentVersion() {
    const v = this.metadata.current_version;
    return v === undefined ? null : BigInt(v);
  }
}
class LockHeld extends SessiondError {}
class LockLost extends SessiondError {}
class LockWaitTimeout extends SessiondError {}
/**
 * ABORTED / SUPERSEDED: a newer LockSession of the session's burst (LATEST_WINS
 * or DEBOUNCE) took this waiter's turn; it carries this call's payload on, so
 * leave the turn to it. Never retried.
 */
class Superseded extends SessiondError {}
class DeadlineExceeded extends SessiondError {}
class Overloaded extends SessiondError {}
/**
 * RESOURCE_EXHAUSTED / QUOTA_EXCEEDED: the write would grow the namespace beyond
 * a quota (its sessions or their bytes); nothing was written. Retrying as is
 * cannot help: delete sessions, write smaller ones, or have the quota raised.
 */
class QuotaExceeded extends SessiondError {
  /** Which quota: "sessions" or "bytes". */
  get quota() {
    return this.metadata.quota ?? null;
  }
  /** The quota's value. */
  get limit() {
    const v = this.metadata.limit;
    return v === undefined ? null : BigInt(v);
  }
  /** The namespace's usage of that quota before the write. */
  get usage() {
    const v = this.metadata.usage;
    return v === undefined ? null : BigInt(v);
  }
}
/**
 * RESOURCE_EXHAUSTED / RATE_LIMITED: checkRate refused the call; it took
 * nothing. The same call is admitted after retryAfterMs (unless others take the
 * units first). Never retried by the client: whether the work is still worth
 * doing then is the caller's choice.
 */
class RateLimited extends SessiondError {
  /** The limit's name. */
  get limit() {
    return this.metadata.limit ?? null;
  }
  /** When the same call would be admitted, in milliseconds. */
  get retryAfterMs() {
    const v = this.metadata.retry_after_ms;
    return v === undefined ? null : Number(v);
  }
}
/**
 * RESOURCE_EXHAUSTED / WATCH_LAGGED: a watch did not read its events as fast
 * as they came and was ended; watch again with afterVersion = the last version
 * read.
 */
class WatchLagged extends SessiondError {}
class Unavailable extends SessiondError {}
class StoreUnavailable extends Unavailable {}
class ShuttingDown extends Unavailable {}
class Unauthenticated extends SessiondError {}
class PermissionDenied extends SessiondError {}

const BY_REASON = {
  INVALID_SESSION_ID: InvalidArgument,
  INVALID_FIELD: InvalidArgument,
  INVALID_LEASE: InvalidArgument,
  INVALID_WAIT: InvalidArgument,
  INVALID_LOCK_TOKEN: InvalidArgument,
  LIMIT_EXCEEDED: InvalidArgument,
  INVALID_FIELD_OP: InvalidArgument,
  FIELD_NOT_INTEGER: InvalidArgument,
  INTEGER_OVERFLOW: InvalidArgument,
  FIELD_NOT_LIST: InvalidArgument,
  INVALID_IDEMPOTENCY_KEY: InvalidArgument,
  IDEMPOTENCY_KEY_REUSED: InvalidArgument,
  SESSION_NOT_FOUND: SessionNotFound,
  VERSION_MISMATCH: VersionMismatch,
  LOCK_HELD: LockHeld,
  LOCK_LOST: LockLost,
  LOCK_WAIT_TIMEOUT: LockWaitTimeout,
  SUPERSEDED: Superseded,
  INVALID_TURN_POLICY: InvalidArgument,
  INVALID_DEBOUNCE: InvalidArgument,
  OVERLOADED: Overloaded,
  QUOTA_EXCEEDED: QuotaExceeded,
  RATE_LIMITED: RateLimited,
  WATCH_LAGGED: WatchLagged,
  INVALID_RATE_LIMIT: InvalidArgument,
  STORE_UNAVAILABLE: StoreUnavailable,
  SHUTTING_DOWN: ShuttingDown,
  UNAUTHENTICATED: Unauthenticated,
  NAMESPACE_DENIED: PermissionDenied,
  ADMIN_DENIED: PermissionDenied,
  INVALID_PAGE_TOKEN: InvalidArgument,
};

const BY_CODE = {
  [Code.INVALID_ARGUMENT]: InvalidArgument,
  [Code.NOT_FOUND]: SessionNotFound,
  [Code.ABORTED]: VersionMismatch,
  [Code.DEADLINE_EXCEEDED]: DeadlineExceeded,
  [Code.RESOURCE_EXHAUSTED]: Overloaded,
  [Code.UNAVAILABLE]: Unavailable,
  [Code.UNAUTHENTICATED]: Unauthenticated,
  [Code.PERMISSION_DENIED]: PermissionDenied,
};

/** Reads the sessiond ErrorInfo out of a grpc-js error; null when there is none. */
function decodeErrorInfo(err) {
  const raw = err && err.metadata && typeof err.metadata.get === 'function'
    ? err.metadata.get('grpc-status-details-bin')
    : [];
  for (const bin of raw) {
    let status;
    try {
      status = StatusMsg.decode(Buffer.isBuffer(bin) ? bin : Buffer.from(String(bin), 'base64'));
    } catch {
      continue;
    }
    for (const any of status.details) {
      if (any.type_url !== ERROR_INFO_URL) continue;
      const info = ErrorInfoMsg.toObject(ErrorInfoMsg.decode(any.value), { defaults: true });
      if (info.domain === DOMAIN) return { reason: info.reason, metadata: { ...info.metadata } };
    }
  }
  return null;
}

/** Turns a grpc-js ServiceError into the matching SessiondError subclass. */
function fromGrpcError(err, method) {
  if (err instanceof SessiondError) return err;
  const code = typeof err.code === 'number' ? err.code : Code.UNKNOWN;
  const info = decodeErrorInfo(err);
  const Cls = (info && BY_REASON[info.reason]) || BY_CODE[code] || SessiondError;
  const details = typeof err.details === 'string' ? err.details : err.message;
  const tag = info ? `${CODE_NAMES[code]}/${info.reason}` : CODE_NAMES[code] ?? String(code);
  return new Cls(`${method}: ${tag}: ${details}`, {
    code,
    reason: info ? info.reason : null,
    metadata: info ? info.metadata : {},
    details,
    cause: err,
  });
}

module.exports = {
  SessiondError,
  InvalidArgument,
  SessionNotFound,
  VersionMismatch,
  LockHeld,
  LockLost,
  LockWaitTimeout,
  Superseded,
  DeadlineExceeded,
  Overloaded,
  QuotaExceeded,
  RateLimited,
  WatchLagged,
  Unavailable,
  StoreUnavailable,
  ShuttingDown,
  Unauthenticated,
  PermissionDenied,
  fromGrpcError,
  decodeErrorInfo,
};
