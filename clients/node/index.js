'use strict';
// @sessiond/client: Node.js client for sessiond. See README.md.

const { Client } = require('./lib/client');
const errors = require('./lib/errors');
const { SessionDraft } = require('./lib/draft');
const ops = require('./lib/ops');
const { status } = require('@grpc/grpc-js');

module.exports = {
  Client,
  SessionDraft,
  /** Field operations for update({ ops }), and the entries of a list field. */
  increment: ops.increment,
  append: ops.append,
  setIfAbsent: ops.setIfAbsent,
  entries: ops.entries,
  /** LockSession's turn policies, for lock(id, { policy }). */
  TurnPolicy: Object.freeze({ FIFO: 'FIFO', LATEST_WINS: 'LATEST_WINS', DEBOUNCE: 'DEBOUNCE' }),
  /** gRPC status codes, as in @grpc/grpc-js. */
  status,
  SessiondError: errors.SessiondError,
  InvalidArgument: errors.InvalidArgument,
  SessionNotFound: errors.SessionNotFound,
  VersionMismatch: errors.VersionMismatch,
  LockHeld: errors.LockHeld,
  LockLost: errors.LockLost,
  LockWaitTimeout: errors.LockWaitTimeout,
  Superseded: errors.Superseded,
  DeadlineExceeded: errors.DeadlineExceeded,
  Overloaded: errors.Overloaded,
  QuotaExceeded: errors.QuotaExceeded,
  RateLimited: errors.RateLimited,
  WatchLagged: errors.WatchLagged,
  Unavailable: errors.Unavailable,
  StoreUnavailable: errors.StoreUnavailable,
  ShuttingDown: errors.ShuttingDown,
  Unauthenticated: errors.Unauthenticated,
  PermissionDenied: errors.PermissionDenied,
};
