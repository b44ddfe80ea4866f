// Typed errors of the domain and the store. Every layer throws these; the RPC edge maps them to
// gRPC status codes in one place (src/rpc/status.ts). Anything else is an internal error.

/** One offending field of a request, named by its path in the request (e.g. "session.id"). */
export interface FieldViolation {
  field: string;
  description: string;
}

export abstract class DomainError extends Error {
  /** Machine-readable reason, sent as google.rpc.ErrorInfo.reason (UPPER_SNAKE_CASE). */
  abstract readonly reason: string;
  /** Extra key/value pairs sent as google.rpc.ErrorInfo.metadata. */
  readonly metadata: Record<string, string>;
  constructor(message: string, metadata: Record<string, string> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.metadata = metadata;
  }
}

/** Most field violations one error lists (see InvalidArgumentError). */
export const MAX_LISTED_VIOLATIONS = 20;

/** Bad input: one or more fields violate the contract (INVALID_ARGUMENT). */
export class InvalidArgumentError extends DomainError {
  readonly reason = "INVALID_ARGUMENT";
  readonly violations: FieldViolation[];
  constructor(violations: FieldViolation[]) {
    // One list element can be wrong many times over (20,000 bad ids): the answer names the
    // first MAX_LISTED_VIOLATIONS and says how many more there were, so it stays small.
    const listed = violations.slice(0, MAX_LISTED_VIOLATIONS);
    const more = violations.length - listed.length;
    super(listed.map((v) => `${v.field}: ${v.description}`).join("; ") + (more > 0 ? `; and ${more} more` : ""));
    this.violations = listed;
  }
  static field(field: string, description: string): InvalidArgumentError {
    return new InvalidArgumentError([{ field, description }]);
  }
}

/** The session does not exist (NOT_FOUND). */
export class NotFoundError extends DomainError {
  readonly reason = "SESSION_NOT_FOUND";
  constructor(readonly id: string) {
    super(`session "${id}" not found`, { id });
  }
}

/** A session with this id exists already (ALREADY_EXISTS). */
export class AlreadyExistsError extends DomainError {
  readonly reason = "SESSION_ALREADY_EXISTS";
  constructor(readonly id: string) {
    super(`session "${id}" already exists`, { id });
  }
}

/** The session's revision is not the expected one (ABORTED): re-read and retry. */
export class RevisionConflictError extends DomainError {
  readonly reason = "REVISION_MISMATCH";
  constructor(
    readonly id: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`session "${id}" is at revision ${actual}, not the expected ${expected}`, {
      id,
      expected_revision: String(expected),
      actual_revision: String(actual),
    });
  }
}

/**
 * The session is older than SESSION_MAX_DURATION, so activity cannot extend or re-open it
 * (FAILED_PRECONDITION): start a new session instead.
 */
export class SessionTooLongError extends DomainError {
  readonly reason = "SESSION_TOO_LONG";
  constructor(
    readonly id: string,
    readonly maxDurationSeconds: number,
  ) {
    super(`session "${id}" is older than the maximum session duration (${maxDurationSeconds} s); create a new session`, {
      id,
      max_duration_seconds: String(maxDurationSeconds),
    });
  }
}

/** The store cannot be reached or did not answer in time (UNAVAILABLE): retry later. */
export class StoreUnavailableError extends DomainError {
  readonly reason = "STORE_UNAVAILABLE";
  constructor(message = "the session store is unavailable", options?: { cause?: unknown }) {
    super(message, {}, options);
  }
}

/** A watch cursor older than the change log's retention window (OUT_OF_RANGE). */
export class ChangesTrimmedError extends DomainError {
  readonly reason = "REVISION_COMPACTED";
  constructor(
    readonly requested: number,
    readonly oldestResumable: number,
  ) {
    super(
      `revision ${requested} is older than the retained change history; resume after ${oldestResumable} or later (re-read the state first)`,
      {
        requested_revision: String(requested),
        oldest_resumable_revision: String(oldestResumable),
      },
    );
  }
}

/** The server is shutting down (UNAVAILABLE): reconnect, to another replica if there is one. */
export class ShuttingDownError extends DomainError {
  readonly reason = "SHUTTING_DOWN";
  constructor() {
    super("the server is shutting down; resume the watch elsewhere");
  }
}

/**
 * A refusal that may say when to try again: `retryAfterMs`, when set, is sent as
 * google.rpc.RetryInfo (a retry after that delay is expected to succeed). `reason` names the
 * limit or condition (e.g. "TOO_MANY_CALLS", "SESSION_TOO_LARGE").
 */
export abstract class RetryableError extends DomainError {
  constructor(
    readonly reason: string,
    message: string,
    readonly retryAfterMs?: number,
    metadata: Record<string, string> = {},
  ) {
    super(message, metadata);
  }
}

/**
 * A limit of the service is reached (RESOURCE_EXHAUSTED): too many calls, watchers or
 * connections at once, a request or a document over a size limit, a watcher too far behind.
 */
export class ResourceExhaustedError extends RetryableError {}

/**
 * The service is overloaded or a dependency is briefly unable to serve (UNAVAILABLE): retry
 * later, with backoff.
 */
export class OverloadedError extends RetryableError {}

/**
 * The call carries no API key, or one that is not (or no longer) valid (UNAUTHENTICATED).
 * `reason` is API_KEY_MISSING or API_KEY_INVALID (src/security/keys.ts).
 */
export class UnauthenticatedError extends DomainError {
  constructor(
    readonly reason: string,
    message: string,
    metadata: Record<string, string> = {},
  ) {
    super(message, metadata);
  }
}

/** The API key is valid but lacks the scope the method needs (PERMISSION_DENIED, reason SCOPE_MISSING). */
export class PermissionDeniedError extends DomainError {
  constructor(
    readonly reason: string,
    message: string,
    metadata: Record<string, string> = {},
  ) {
    super(message, metadata);
  }
}

/**
 * EraseProfile kept finding new sessions of the profile (created while it ran) and stopped
 * before it could remove the profile's last traces (ABORTED): stop creating them, then retry.
 */
export class ErasureContendedError extends DomainError {
  readonly reason = "ERASURE_CONTENDED";
  constructor(
    readonly profileId: string,
    readonly erased: number,
  ) {
    super(`sessions of profile "${profileId}" kept being created while it was erased (${erased} erased so far); retry`, {
      profile_id: profileId,
      erased_sessions: String(erased),
    });
  }
}
