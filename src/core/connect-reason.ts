/**
 * grpc-js' text for a call that found no connection ("14 UNAVAILABLE: No
 * connection established. Last error: Error: connect ECONNREFUSED ...") in a
 * few words, for the CLI's errors and `loom members`.
 */
export function connectReason(details: string): string {
  const sys = /\b(E[A-Z]{3,}[A-Z_]*)\b/.exec(details);
  if (sys) {
    if (sys[1] === 'ECONNREFUSED') return 'connection refused';
    if (sys[1] === 'ENOTFOUND' || sys[1] === 'EAI_AGAIN') return 'unknown host';
    if (sys[1] === 'ETIMEDOUT') return 'connection timed out';
    if (sys[1] === 'EHOSTUNREACH' || sys[1] === 'ENETUNREACH') return 'host unreachable';
    return sys[1].toLowerCase();
  }
  if (/name resolution failed/i.test(details)) return 'unknown host';
  // gRPC between two connection attempts ("Last error: null"): the last one failed.
  if (/No connection established/i.test(details)) return 'connection failed';
  if (/deadline exceeded/i.test(details)) return 'timed out connecting';
  const text = details.replace(/\s*\(\d{4}-\d\d-\d\dT[^)]*\)/g, '').trim();
  return text || 'connection failed';
}

/** A failed probe of an etcd member (a Status call with a `deadlineMs` deadline) in a few words: gRPC's messages run long. */
export function probeProblem(err: unknown, deadlineMs: number): string {
  const msg = (err instanceof Error ? err.message : String(err)).split('\n')[0];
  if (/DEADLINE_EXCEEDED|deadline exceeded/i.test(msg)) return `no answer within ${deadlineMs / 1000} s`;
  return connectReason(msg.replace(/^\d+ [A-Z_]+: /, ''));
}
