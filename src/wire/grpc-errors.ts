/**
 * LoomErrors on the gRPC wire, both ways: a node sends every error as a
 * ServiceError whose metadata carries `loom-code` (an ErrorCode) and whose
 * details are the message to show (toServiceError); a client maps whatever a
 * call throws back to a LoomError (fromGrpcError).
 *
 * Errors without it come from gRPC itself (connection refused, deadline, a
 * proxy, an older node) and are mapped by their numeric status.
 */
import { Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { codeForGrpcStatus, isErrorCode, LoomError, toLoomError } from '../core/errors';
import { connectReason } from '../core/connect-reason';

export const LOOM_CODE_KEY = 'loom-code';
/** Optional: the id (task, node) the error is about. */
export const LOOM_SUBJECT_KEY = 'loom-subject';

/** What a node answers for any error a handler throws. */
export function toServiceError(err: unknown): Partial<ServiceError> {
  const e = toLoomError(err);
  const metadata = new Metadata();
  metadata.set(LOOM_CODE_KEY, e.code);
  return { code: e.grpcStatus, details: e.message, metadata, message: e.message };
}

function isServiceError(err: unknown): err is ServiceError {
  return (
    typeof err === 'object' &&
    err !== null &&
    typeof (err as { code?: unknown }).code === 'number' &&
    err instanceof Error
  );
}

function metadataString(md: Metadata | undefined, key: string): string | undefined {
  if (!md || typeof md.get !== 'function') return undefined;
  const value = md.get(key)[0];
  if (value === undefined) return undefined;
  return typeof value === 'string' ? value : Buffer.from(value).toString('utf8');
}

/**
 * Why a TLS connection failed, from this client's side, or undefined when the
 * failure is not about TLS. The fixes are named (LOOM_TLS_*, --host).
 */
function tlsReason(details: string, secure: boolean): string | undefined {
  if (/presented (a client|a non-loom) certificate/.test(details)) {
    const m = /(the server at .*? certificate), not a loom node certificate/.exec(details);
    return `${m ? m[1] : 'the server did not present a node certificate'}, not a loom node certificate`;
  }
  if (!secure) return undefined;
  if (/self[- ]signed certificate|unable to (get|verify)[^.]*(issuer|certificate)|certificate signature failure/i.test(details)) {
    return "its certificate is not signed by the CA in LOOM_TLS_CA (is that this cluster's CA?)";
  }
  if (/certificate has expired/i.test(details)) return 'its certificate has expired (reissue it with `loom certs issue`)';
  if (/certificate is not yet valid/i.test(details)) return 'its certificate is not valid yet (check the clocks)';
  if (/Hostname\/IP does not match certificate's altnames|does not match certificate/i.test(details)) {
    return 'its certificate does not name the address dialled (reissue it with `loom certs issue ... node NAME --host ADDRESS`)';
  }
  if (/wrong version number|packet length too long|http request|unexpected eof|disconnected before secure TLS connection/i.test(details)) {
    return 'it does not speak TLS (is the node running without --tls-*? then unset LOOM_TLS_*)';
  }
  if (/alert (unknown ca|bad certificate|certificate unknown|certificate expired|handshake failure)/i.test(details)) {
    return `it refused this client's certificate during the TLS handshake (${/alert [a-z ]+/i.exec(details)![0]})`;
  }
  return undefined;
}

/** Did a DEADLINE_EXCEEDED happen before any connection was made? */
function neverConnected(details: string): boolean {
  return !/remote_addr=/.test(details);
}

/**
 * Maps anything a LoomApi call throws to a LoomError. `address` is the
 * host:port the client talks to, used in connection-failure messages;
 * `secure`: the client speaks TLS (TLS failures are then explained).
 */
export function fromGrpcError(err: unknown, address: string, secure = false): LoomError {
  if (err instanceof LoomError) return err;
  if (!isServiceError(err)) {
    const message = err instanceof Error ? err.message : String(err);
    return new LoomError('INTERNAL', message || 'unknown error');
  }
  const details = (err.details ?? '').trim() || err.message;
  const loomCode = metadataString(err.metadata, LOOM_CODE_KEY);
  if (loomCode !== undefined && isErrorCode(loomCode)) {
    const subject = metadataString(err.metadata, LOOM_SUBJECT_KEY);
    return new LoomError(loomCode, details || loomCode.toLowerCase(), subject || undefined);
  }
  const code = codeForGrpcStatus(err.code);
  const tls = code === 'UNAVAILABLE' || code === 'DEADLINE_EXCEEDED' ? tlsReason(details, secure) : undefined;
  if (tls) return new LoomError('UNAVAILABLE', `cannot talk to loom node at ${address}: ${tls}`);
  if (code === 'UNAVAILABLE' || (code === 'DEADLINE_EXCEEDED' && neverConnected(details))) {
    return new LoomError(
      'UNAVAILABLE',
      `cannot reach loom node at ${address}: ${connectReason(details)}`,
    );
  }
  if (code === 'DEADLINE_EXCEEDED') {
    return new LoomError('DEADLINE_EXCEEDED', `loom node at ${address} did not answer in time`);
  }
  if (code === 'CANCELLED') return new LoomError('CANCELLED', 'cancelled');
  if (err.code === GrpcStatus.UNIMPLEMENTED) {
    return new LoomError('INTERNAL', `loom node at ${address} does not support this request: ${details}`);
  }
  return new LoomError(code, details || `gRPC status ${err.code}`);
}

export function cancelledError(): LoomError {
  return new LoomError('CANCELLED', 'cancelled');
}
