// The one place where errors become gRPC statuses. Typed domain/store errors map to their
// codes with google.rpc.ErrorInfo (and google.rpc.BadRequest for bad input); anything else is
// logged with its detail and answered as INTERNAL with a generic message.

import { create, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema, type BadRequest } from "../../gen/google/rpc/error_details_pb";
import { StatusSchema } from "../../gen/google/rpc/status_pb";
import {
  AlreadyExistsError,
  ChangesTrimmedError,
  DomainError,
  ErasureContendedError,
  InvalidArgumentError,
  NotFoundError,
  OverloadedError,
  PermissionDeniedError,
  ResourceExhaustedError,
  RetryableError,
  RevisionConflictError,
  SessionTooLongError,
  ShuttingDownError,
  StoreUnavailableError,
  UnauthenticatedError,
} from "../domain/errors";
import type { Logger } from "../log";

/** google.rpc.ErrorInfo.domain of every error this service sends. */
export const ERROR_DOMAIN = "session.v1";

export interface RpcDetail {
  desc: DescMessage;
  value: MessageShape<DescMessage>;
}

export interface RpcStatus {
  code: Code;
  message: string;
  details: RpcDetail[];
}

function codeOf(err: DomainError): Code {
  if (err instanceof InvalidArgumentError) return Code.InvalidArgument;
  if (err instanceof NotFoundError) return Code.NotFound;
  if (err instanceof AlreadyExistsError) return Code.AlreadyExists;
  if (err instanceof RevisionConflictError) return Code.Aborted;
  if (err instanceof ErasureContendedError) return Code.Aborted;
  if (err instanceof StoreUnavailableError) return Code.Unavailable;
  if (err instanceof ShuttingDownError) return Code.Unavailable;
  if (err instanceof ChangesTrimmedError) return Code.OutOfRange;
  if (err instanceof SessionTooLongError) return Code.FailedPrecondition;
  if (err instanceof ResourceExhaustedError) return Code.ResourceExhausted;
  if (err instanceof OverloadedError) return Code.Unavailable;
  if (err instanceof UnauthenticatedError) return Code.Unauthenticated;
  if (err instanceof PermissionDeniedError) return Code.PermissionDenied;
  return Code.Internal;
}

export function toRpcStatus(err: unknown, log: Logger, method: string): RpcStatus {
  if (err instanceof DomainError) {
    const code = codeOf(err);
    const details: RpcDetail[] = [
      { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: err.reason, domain: ERROR_DOMAIN, metadata: err.metadata }) },
    ];
    if (err instanceof InvalidArgumentError) {
      details.push({ desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: err.violations }) });
    }
    if (err instanceof RetryableError && err.retryAfterMs !== undefined) {
      const ms = Math.max(0, Math.round(err.retryAfterMs));
      details.push({
        desc: RetryInfoSchema,
        value: create(RetryInfoSchema, { retryDelay: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 } }),
      });
    }
    if (code === Code.Unavailable && !(err instanceof OverloadedError))
      log.warn("store unavailable", { method, error: String(err.cause ?? err.message) });
    return { code, message: err.message, details };
  }
  log.error("internal error", { method, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  return {
    code: Code.Internal,
    message: "internal error",
    details: [{ desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: "INTERNAL", domain: ERROR_DOMAIN }) }],
  };
}

/** The status as a serialized google.rpc.Status, for the grpc-status-details-bin trailer. */
export function statusDetailsBin(status: RpcStatus): Uint8Array {
  return toBinary(
    StatusSchema,
    create(StatusSchema, {
      code: status.code,
      message: status.message,
      details: status.details.map((d) => anyPack(d.desc, d.value)),
    }),
  );
}

/**
 * Size budgets of a status sent as HTTP/2 trailers. The trailers are one HPACK header block, and
 * nghttp2 (node:http2, hence grpc-js clients; also curl and others) refuses any single header
 * field over 64 KB with a *connection* error: the client sends GOAWAY(COMPRESSION_ERROR) and
 * every call on that connection fails ("Connection dropped", "Stream refused by server") or
 * hangs until its deadline. A validation error listing a violation per element of a 20000-item
 * field made grpc-message and grpc-status-details-bin that large (the fuzz's dropped
 * connections). Other clients cap the whole header list lower (gRPC C-core: 8 KB soft limit), so
 * the status stays well under that: grpc-message (percent-encoded) at most 1 KB, the details
 * (base64) at most about 5.5 KB. The Connect port sends errors in the body and is not affected.
 */
const MAX_STATUS_MESSAGE_ENCODED = 1024;
const MAX_STATUS_DETAILS_BYTES = 4096;
const MAX_VIOLATION_TEXT = 200;

const clip = (text: string, max: number): string =>
  text.length <= max ? text : `${text.slice(0, max)}… (${text.length - max} more characters)`;

/** `message` cut so that its percent-encoded form (what grpc-js sends) fits the budget. */
function boundedMessage(message: string): string {
  if (encodeURIComponent(message).length <= MAX_STATUS_MESSAGE_ENCODED) return message;
  let keep = Math.min(message.length, MAX_STATUS_MESSAGE_ENCODED);
  for (;;) {
    const cut = clip(message, keep);
    if (encodeURIComponent(cut).length <= MAX_STATUS_MESSAGE_ENCODED || keep === 0) return cut;
    keep = Math.floor(keep / 2);
  }
}

/** The status with its message and details cut to the trailer budgets (see above). */
export function boundedStatus(status: RpcStatus): RpcStatus {
  const message = boundedMessage(status.message);
  let bounded: RpcStatus = { ...status, message };
  if (statusDetailsBin(bounded).length <= MAX_STATUS_DETAILS_BYTES) return bounded;
  // Field violations: each one's texts clipped, then as many as fit (the first ones, in order).
  const all = status.details.map((d) => {
    if (d.desc.typeName !== BadRequestSchema.typeName) return d;
    const v = (d.value as BadRequest).fieldViolations;
    return {
      desc: d.desc,
      value: create(BadRequestSchema, {
        fieldViolations: v.map((f) => ({
          ...f,
          field: clip(f.field, MAX_VIOLATION_TEXT),
          description: clip(f.description, MAX_VIOLATION_TEXT),
        })),
      }),
    };
  });
  const withViolations = (n: number): RpcStatus => ({
    ...status,
    message,
    details: all.map((d) =>
      d.desc.typeName === BadRequestSchema.typeName
        ? { desc: d.desc, value: create(BadRequestSchema, { fieldViolations: (d.value as BadRequest).fieldViolations.slice(0, n) }) }
        : d,
    ),
  });
  let lo = 0;
  let hi = Math.max(
    0,
    ...all.map((d) => (d.desc.typeName === BadRequestSchema.typeName ? (d.value as BadRequest).fieldViolations.length : 0)),
  );
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (statusDetailsBin(withViolations(mid)).length <= MAX_STATUS_DETAILS_BYTES) lo = mid;
    else hi = mid - 1;
  }
  bounded = withViolations(lo);
  if (statusDetailsBin(bounded).length <= MAX_STATUS_DETAILS_BYTES) return bounded;
  // Still too large (e.g. a huge ErrorInfo metadata value): the code and message only.
  return { ...status, message, details: [] };
}
