// SQLite errors -> the port's typed errors, and errors across threads. A result code that means
// the file cannot be reached or did not answer (busy, locked, I/O, full, ...) becomes
// StoreUnavailableError (UNAVAILABLE, never INTERNAL); domain errors pass through; anything else
// is rethrown as is (a bug). An error thrown on a worker thread travels as plain data
// (encodeError) and is rebuilt on the main thread as the same class with its fields (decodeError).

import Database from "better-sqlite3";

import * as domainErrors from "../../domain/errors";
import { DomainError, StoreUnavailableError } from "../../domain/errors";

/** SQLite result codes that mean "cannot be reached / did not answer", not a bug. */
export const UNAVAILABLE_CODES = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|PROTOCOL|NOTADB|CORRUPT)/;

export function toStoreError(err: unknown): unknown {
  if (err instanceof DomainError) return err;
  if (err instanceof Database.SqliteError && UNAVAILABLE_CODES.test(err.code)) {
    return new StoreUnavailableError(`SQLite store: ${err.message}`, { cause: err });
  }
  return err;
}

export function deadlineExceeded(): StoreUnavailableError {
  return new StoreUnavailableError("the deadline passed before the store could run the call");
}

export function cancelled(): StoreUnavailableError {
  return new StoreUnavailableError("the call was cancelled before the store ran it");
}

/** An error as data: the class name, its own fields, message and stack. */
export interface EncodedError {
  name: string;
  message: string;
  stack?: string;
  fields: Record<string, unknown>;
}

export function encodeError(err: unknown): EncodedError {
  if (!(err instanceof Error)) return { name: "Error", message: String(err), fields: {} };
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(err)) {
    // Only what structured cloning carries as is (the cause of a store error is a driver error).
    if (key === "cause" || typeof value === "function") continue;
    fields[key] = value;
  }
  return { name: err.constructor.name, message: err.message, stack: err.stack, fields };
}

/** Rebuilds an error of the worker as the same class (typed errors keep their fields). */
export function decodeError(encoded: EncodedError): Error {
  const known = (domainErrors as unknown as Record<string, unknown>)[encoded.name];
  const proto =
    typeof known === "function" && (known as { prototype: unknown }).prototype instanceof Error
      ? (known as { prototype: Error }).prototype
      : Error.prototype;
  const err = Object.create(proto) as Error;
  Object.assign(err, encoded.fields);
  Object.defineProperty(err, "message", { value: encoded.message, writable: true, configurable: true });
  Object.defineProperty(err, "stack", { value: encoded.stack, writable: true, configurable: true });
  if (proto === Error.prototype && !("name" in encoded.fields)) err.name = encoded.name;
  return err;
}
