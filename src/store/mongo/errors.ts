// Driver errors -> the port's typed errors. A call that ran out of budget or could not reach the
// database is StoreUnavailableError (UNAVAILABLE, never INTERNAL); domain errors pass through;
// anything else is rethrown as is (a bug). FerretDB's own way of reporting an expired maxTimeMS is
// matched here (docs/mongodb.md).

import { MongoError, MongoNetworkError, MongoServerError } from "mongodb";

import { DomainError, StoreUnavailableError } from "../../domain/errors";
import type { Call } from "./call";

const UNAVAILABLE_CODES = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  50, // MaxTimeMSExpired
  64, // WriteConcernFailed (wtimeout)
  89, // NetworkTimeout
  91, // ShutdownInProgress
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436, // NotPrimaryOrSecondary
]);
const UNAVAILABLE_NAMES = new Set([
  "MongoServerSelectionError",
  "MongoTopologyClosedError",
  "MongoNotConnectedError",
  "MongoClientClosedError",
  "MongoServerClosedError",
  "MongoOperationTimeoutError",
  "MongoWaitQueueTimeoutError",
  "MongoPoolClosedError",
  "AbortError",
  "TimeoutError",
]);
const UNAVAILABLE_LABELS = ["RetryableWriteError", "ResetPool", "SystemOverloadedError", "RetryableError"];

export function isDuplicateKey(err: unknown): boolean {
  return err instanceof MongoServerError && err.code === 11000;
}

function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (err instanceof MongoNetworkError || UNAVAILABLE_NAMES.has(err.name)) return true;
  // FerretDB's expired maxTimeMS and interrupted SQLite statements (docs/mongodb.md, "Errors").
  if (err instanceof MongoServerError && (err.message.includes("handleMaxTimeMSError") || err.message.endsWith("interrupted (9)")))
    return true;
  if (err instanceof MongoServerError && typeof err.code === "number" && UNAVAILABLE_CODES.has(err.code)) return true;
  return err instanceof MongoError && UNAVAILABLE_LABELS.some((label) => err.hasErrorLabel(label));
}

/** Only typed errors leave the adapter; anything unexpected is rethrown as is (a bug). */
export function toStoreError(err: unknown, call?: Call): unknown {
  if (err instanceof DomainError) return err;
  if (call && (err === call.signal.reason || call.signal.aborted)) {
    return new StoreUnavailableError("the session store did not answer before the deadline", { cause: err });
  }
  if (isUnavailable(err)) {
    return new StoreUnavailableError("the session store cannot be reached", { cause: err });
  }
  return err;
}

/** A write error after which the write may or may not have happened. */
export function isUncertain(err: unknown, call: Call): boolean {
  return call.signal.aborted || isUnavailable(err);
}
