/**
 * The one error class of loom. Every failure that crosses a boundary (gRPC,
 * CLI) carries a stable `code`; the code travels in gRPC metadata
 * (`loom-code`) and is mapped to a gRPC status, an HTTP status and a CLI
 * exit code in the single table below — nowhere else.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT' // bad input: empty command, malformed flag, over a limit
  | 'NOT_FOUND' // unknown task / node id
  | 'INVALID_STATE' // the task is not in a state that allows the request
  | 'UNAVAILABLE' // the cluster (etcd or a node) cannot be reached
  | 'RESOURCE_EXHAUSTED' // too many streams / requests
  | 'PERMISSION_DENIED'
  | 'DEADLINE_EXCEEDED'
  | 'CANCELLED' // the caller's AbortSignal fired
  | 'FENCED' // this node lost its lease; it must not act on task keys
  | 'CONFLICT' // a guarded transaction lost its race (normal, usually quiet)
  | 'INTERNAL';

interface CodeInfo {
  /** Numeric gRPC status (see grpc/status codes; core does not import grpc). */
  grpc: number;
  /** CLI exit status for loom's own failures. */
  exit: number;
  /** HTTP status of the HTTP/JSON API (node/http-api.ts). */
  http: number;
}

/** The single mapping table: code -> gRPC status, exit status, HTTP status. */
export const ERROR_CODES: Record<ErrorCode, CodeInfo> = {
  INVALID_ARGUMENT: { grpc: 3, exit: 2, http: 400 },
  NOT_FOUND: { grpc: 5, exit: 3, http: 404 },
  INVALID_STATE: { grpc: 9, exit: 4, http: 409 },
  UNAVAILABLE: { grpc: 14, exit: 5, http: 503 },
  RESOURCE_EXHAUSTED: { grpc: 8, exit: 6, http: 429 },
  PERMISSION_DENIED: { grpc: 7, exit: 7, http: 403 },
  DEADLINE_EXCEEDED: { grpc: 4, exit: 5, http: 504 },
  // 499: nginx's "client closed request"; nobody reads it, the client is gone.
  CANCELLED: { grpc: 1, exit: 130, http: 499 },
  FENCED: { grpc: 14, exit: 5, http: 503 },
  CONFLICT: { grpc: 10, exit: 4, http: 409 },
  INTERNAL: { grpc: 13, exit: 1, http: 500 },
};

/** gRPC status -> code, for errors that arrive without loom metadata. */
const GRPC_TO_CODE: Record<number, ErrorCode> = {
  1: 'CANCELLED',
  3: 'INVALID_ARGUMENT',
  4: 'DEADLINE_EXCEEDED',
  5: 'NOT_FOUND',
  7: 'PERMISSION_DENIED',
  8: 'RESOURCE_EXHAUSTED',
  9: 'INVALID_STATE',
  10: 'CONFLICT',
  14: 'UNAVAILABLE',
};

export class LoomError extends Error {
  override readonly name = 'LoomError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** The id (task, node) the error concerns, when there is one. */
    readonly subject?: string,
  ) {
    super(message);
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }

  get grpcStatus(): number {
    return ERROR_CODES[this.code].grpc;
  }
}

export function isErrorCode(value: string): value is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}

export function codeForGrpcStatus(status: number): ErrorCode {
  return GRPC_TO_CODE[status] ?? 'INTERNAL';
}

/** Wraps anything thrown into a LoomError (unknown errors become INTERNAL). */
export function toLoomError(err: unknown): LoomError {
  if (err instanceof LoomError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new LoomError('INTERNAL', message);
}

export const invalid = (message: string, subject?: string) =>
  new LoomError('INVALID_ARGUMENT', message, subject);
export const notFound = (message: string, subject?: string) =>
  new LoomError('NOT_FOUND', message, subject);
