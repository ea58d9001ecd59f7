/**
 * A task's kind, pure: a process (the default), a container, or an HTTP
 * request. The kind decides which runner starts it (runner/kind.ts), which
 * nodes may claim it (NodeInfo.kinds, see fit.ts), and whether it may run
 * again after its node died mid-attempt (see restartDefault).
 */
import { HttpSpec, TaskSpec } from '../gen/loom';
import { invalid } from './errors';

export type TaskKindName = 'command' | 'container' | 'http';

export const TASK_KINDS: readonly TaskKindName[] = ['command', 'container', 'http'];

export function kindOf(spec: Partial<Pick<TaskSpec, 'container' | 'http'>> | undefined): TaskKindName {
  if (spec?.http?.url) return 'http';
  if (spec?.container?.image) return 'container';
  return 'command';
}

/**
 * The kinds a node's record says it runs. Records from nodes older than
 * kinds list none: those run commands and containers, never http.
 */
export function nodeKinds(node: { kinds?: string[]; docker?: boolean }): string[] {
  if (node.kinds && node.kinds.length > 0) return node.kinds;
  return node.docker ? ['command', 'container'] : ['command'];
}

/** RFC 9110 §9.2.2: repeating one of these has the effect of sending it once. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'TRACE']);

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method.toUpperCase());
}

/**
 * Whether a task may run again after its node died mid-attempt, when its
 * submitter did not say (`--restart`): a command or container may (that is
 * what the cluster is for), an HTTP request only if its method is idempotent:
 * a POST that reached the server before the node died must not be sent twice
 * behind the user's back.
 */
export function restartDefault(spec: Partial<Pick<TaskSpec, 'http'>>): boolean {
  return spec.http?.url ? isIdempotent(spec.http.method || 'GET') : true;
}

export const HTTP_LIMITS = {
  urlBytes: 8 * 1024,
  headerCount: 100,
  headerBytes: 64 * 1024,
  bodyBytes: 1024 * 1024,
  caBytes: 64 * 1024,
  maxRedirects: 50,
  defaultRedirects: 10,
} as const;

/** An RFC 9110 token: methods and header names. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Headers the runner sets from the body and the connection itself: a task may not forge them. */
const RESERVED_HEADERS = new Set(['content-length', 'transfer-encoding', 'connection', 'host', 'upgrade', 'keep-alive', 'te', 'trailer']);

/** A status range list, inclusive: "200-299,304" → [[200,299],[304,304]]. */
export type StatusRanges = [number, number][];

export const DEFAULT_EXPECT = '200-299';

/** Parses an --expect list, or throws INVALID_ARGUMENT naming the bad part. */
export function parseExpect(text: string): StatusRanges {
  const src = text.trim() || DEFAULT_EXPECT;
  const out: StatusRanges = [];
  for (const part of src.split(',')) {
    const m = /^\s*(\d{3})(?:\s*-\s*(\d{3}))?\s*$/.exec(part);
    if (!m) throw invalid(`invalid --expect "${text.slice(0, 80)}": use statuses and ranges such as 200-299,304`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (lo < 100 || hi > 599 || lo > hi) throw invalid(`invalid --expect range "${part.trim()}": statuses are 100 to 599, low first`);
    out.push([lo, hi]);
  }
  if (out.length > 64) throw invalid('--expect lists more than 64 ranges');
  return out;
}

export function statusExpected(status: number, ranges: StatusRanges): boolean {
  return ranges.some(([lo, hi]) => status >= lo && status <= hi);
}

function utf8(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** Returns a normalised copy of an HTTP task's spec or throws INVALID_ARGUMENT. */
export function validateHttp(h: HttpSpec): HttpSpec {
  const method = (h.method || 'GET').toUpperCase();
  if (!TOKEN.test(method) || method.length > 32) throw invalid(`invalid HTTP method "${method.slice(0, 40)}"`);
  if (method === 'CONNECT') throw invalid('HTTP method CONNECT is not supported (it opens a tunnel, not a request)');
  const url = h.url ?? '';
  if (utf8(url) > HTTP_LIMITS.urlBytes) throw invalid(`URL is ${utf8(url)} bytes > limit ${HTTP_LIMITS.urlBytes}`);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(`invalid URL "${url.slice(0, 200)}"`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw invalid(`invalid URL "${url.slice(0, 200)}": only http:// and https:// are supported`);
  if (parsed.username || parsed.password) throw invalid('URL carries credentials: send them in a header (--header \'Authorization: ...\'), which is hidden from other users');
  const headers = (h.headers ?? []).map((x) => ({ name: String(x.name ?? ''), value: String(x.value ?? '') }));
  if (headers.length > HTTP_LIMITS.headerCount) throw invalid(`too many headers: ${headers.length} > limit ${HTTP_LIMITS.headerCount}`);
  let headerBytes = 0;
  for (const { name, value } of headers) {
    if (!TOKEN.test(name)) throw invalid(`invalid header name "${name.slice(0, 64)}"`);
    if (RESERVED_HEADERS.has(name.toLowerCase())) throw invalid(`header ${name} is set by loom from the request itself`);
    if (/[\r\n\0]/.test(value)) throw invalid(`header ${name} has a CR, LF or NUL in its value`);
    headerBytes += utf8(name) + utf8(value) + 4;
  }
  if (headerBytes > HTTP_LIMITS.headerBytes) throw invalid(`headers are ${headerBytes} bytes > limit ${HTTP_LIMITS.headerBytes}`);
  const body = Buffer.from(h.body ?? Buffer.alloc(0));
  if (body.length > HTTP_LIMITS.bodyBytes) throw invalid(`request body is ${body.length} bytes > limit ${HTTP_LIMITS.bodyBytes}`);
  if (body.length > 0 && (method === 'GET' || method === 'HEAD')) throw invalid(`a ${method} request carries no body (use --http POST or PUT with --data)`);
  const expect = (h.expect ?? '').trim();
  parseExpect(expect);
  const caPem = h.caPem ?? '';
  if (utf8(caPem) > HTTP_LIMITS.caBytes) throw invalid(`CA bundle is ${utf8(caPem)} bytes > limit ${HTTP_LIMITS.caBytes}`);
  if (caPem && !caPem.includes('-----BEGIN CERTIFICATE-----')) throw invalid('--http-ca is not a PEM certificate (no BEGIN CERTIFICATE line)');
  if (caPem && parsed.protocol !== 'https:') throw invalid('--http-ca needs an https:// URL');
  const maxRedirects = h.maxRedirects;
  if (maxRedirects !== undefined && (!Number.isInteger(maxRedirects) || maxRedirects < 0 || maxRedirects > HTTP_LIMITS.maxRedirects)) {
    throw invalid(`max redirects must be an integer from 0 to ${HTTP_LIMITS.maxRedirects}`);
  }
  return { method, url, headers, body, expect, caPem, ...(maxRedirects !== undefined ? { maxRedirects } : {}) };
}
