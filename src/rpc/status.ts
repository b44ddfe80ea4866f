// The one place where errors become gRPC statuses. Typed domain/store errors map to their
// codes with google.rpc.ErrorInfo (and google.rpc.BadRequest for bad input); anything else is
// logged with its detail and answered as INTERNAL with a generic message.

import { create, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb";
import { StatusSchema } from "../../gen/google/rpc/status_pb";
import {
  AlreadyExistsError,
  ChangesTrimmedError,
  DomainError,
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
    if (code === Code.Unavailable && !(err instanceof OverloadedError)) log.warn("store unavailable", { method, error: String(err.cause ?? err.message) });
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
