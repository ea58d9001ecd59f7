/**
 * The HTTP task kind: one request (following redirects) made by the node's
 * own process, the response body on stdout, the status line and response
 * headers on stderr, the body as the task's result when it fits.
 *
 * Exit statuses follow curl's, so a script that knows curl reads these the
 * same way: 22 an unexpected status, 6 a name that does not resolve, 7 no
 * connection, 28 the timeout, 35 a TLS handshake failure, 60 a certificate
 * that does not verify, 47 too many redirects, 56 a reply cut off, 1 a
 * redirect to a scheme other than http or https.
 *
 * The request carries no client certificate (the node's TLS identity is
 * never lent to a task) and ignores proxy variables; with a CA given
 * (--http-ca) it replaces the system's roots for that task, as curl's
 * --cacert does. No connection is pooled: one task, its own sockets.
 */
import * as http from 'http';
import * as https from 'https';
import { HttpSpec } from '../gen/loom';
import { HTTP_LIMITS, parseExpect, statusExpected, DEFAULT_EXPECT } from '../core/task-kind';
import { OutputSink, prepareLogDir } from './output-sink';
import { notifyProgress } from './progress';
import { STREAM_STDERR, STREAM_STDOUT } from './log-file';
import { RESULT_MAX_BYTES } from './result-file';
import { RunHandle, RunResult, StopReason } from './types';

export interface HttpRunRequest {
  http: HttpSpec;
  logPath: string;
  /** 0 = none: the whole exchange, redirects included. */
  timeoutMs: number;
  tailBytes: number;
  maxLogBytes?: number;
  /** Wall-clock ms past which the request must not be sent (the node's fence deadline). */
  notAfterMs?: number;
  /** Sent unless the task gives its own User-Agent. */
  userAgent?: string;
}

export interface HttpRunnerOptions {
  /** Log directories made so far (see prepareLogDir). */
  madeDirs?: Set<string>;
  log?: (msg: string) => void;
}

export const HTTP_EXIT = {
  failed: 1, resolve: 6, connect: 7, status: 22, timeout: 28, tls: 35, redirects: 47, receive: 56, certificate: 60,
} as const;

/** Headers that carry a caller's identity: never sent on to another origin by a redirect. */
const CREDENTIAL_HEADERS = new Set(['authorization', 'cookie', 'proxy-authorization']);

const CERT_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED', 'CERT_REVOKED',
]);

class HttpFailure extends Error {
  constructor(readonly exitCode: number, message: string) {
    super(message);
  }
}

/** Maps a socket, DNS or TLS error of `url` to curl's exit status and a sentence. */
function describeError(err: NodeJS.ErrnoException, url: URL): HttpFailure {
  const code = err.code ?? '';
  const where = `${url.hostname}:${url.port || (url.protocol === 'https:' ? 443 : 80)}`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_FAIL') return new HttpFailure(HTTP_EXIT.resolve, `could not resolve host ${url.hostname} (${code})`);
  if (['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ETIMEDOUT'].includes(code)) {
    return new HttpFailure(HTTP_EXIT.connect, `could not connect to ${where} (${code})`);
  }
  if (CERT_ERRORS.has(code)) return new HttpFailure(HTTP_EXIT.certificate, `certificate of ${where} not accepted: ${err.message} (${code})`);
  if (code === 'EPROTO' || code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS')) return new HttpFailure(HTTP_EXIT.tls, `TLS handshake with ${where} failed: ${err.message}`);
  return new HttpFailure(HTTP_EXIT.receive, `request to ${where} failed: ${err.message}${code ? ` (${code})` : ''}`);
}

/** One name per header, duplicates joined into a list (Node sends each), first spelling kept. */
function headerObject(list: { name: string; value: string }[]): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  const spelling = new Map<string, string>();
  for (const { name, value } of list) {
    const key = spelling.get(name.toLowerCase()) ?? name;
    spelling.set(name.toLowerCase(), key);
    const had = out[key];
    out[key] = had === undefined ? value : [...(Array.isArray(had) ? had : [had]), value];
  }
  return out;
}

function hasHeader(list: { name: string }[], name: string): boolean {
  return list.some((h) => h.name.toLowerCase() === name);
}

/** The method and body a redirect asks for (RFC 9110 §15.4): 303, and 301/302 after a POST, become a GET. */
function redirected(status: number, method: string): { method: string; keepBody: boolean } {
  if (status === 303 && method !== 'HEAD') return { method: 'GET', keepBody: false };
  if ((status === 301 || status === 302) && method === 'POST') return { method: 'GET', keepBody: false };
  return { method, keepBody: true };
}

class HttpAttempt implements RunHandle {
  readonly pid = undefined;
  readonly done: Promise<RunResult>;
  private finish!: (r: RunResult) => void;
  private readonly abort = new AbortController();
  private readonly listeners = new Set<() => void>();
  private readonly startedAtMs = Date.now();
  private sink: OutputSink | undefined;
  private response: http.IncomingMessage | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stoppedFor: StopReason | undefined;
  private timedOut = false;
  private settled = false;

  constructor(private readonly req: HttpRunRequest, private readonly opts: HttpRunnerOptions) {
    this.done = new Promise((resolve) => (this.finish = resolve));
    void this.run();
  }

  get logBytes(): number {
    return this.sink?.bytesWritten ?? 0;
  }

  onProgress(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Aborts the exchange at once: a request has nothing to be graceful about. */
  stop(reason: StopReason): void {
    if (this.settled) return;
    this.stoppedFor ??= reason;
    this.abort.abort();
  }

  private async run(): Promise<void> {
    const out: Partial<RunResult> = {};
    try {
      const dirError = prepareLogDir(this.req.logPath, this.opts.madeDirs);
      if (dirError) throw new HttpFailure(126, dirError);
      if (this.req.notAfterMs !== undefined && Date.now() >= this.req.notAfterMs) {
        this.stoppedFor = 'fence';
        throw new HttpFailure(0, 'node fenced before the task started');
      }
      this.sink = new OutputSink({
        logPath: this.req.logPath, tailBytes: this.req.tailBytes, maxLogBytes: this.req.maxLogBytes, log: this.opts.log,
        pause: () => this.response?.pause(), resume: () => this.response?.resume(), onProgress: () => this.emitProgress(),
      });
      if (this.req.timeoutMs > 0) {
        this.timer = setTimeout(() => {
          this.timedOut = true;
          this.abort.abort();
        }, this.req.timeoutMs);
      }
      Object.assign(out, await this.exchange());
    } catch (err) {
      const f = this.failure(err);
      out.error = f.message;
      out.errorExitCode = f.exitCode;
    } finally {
      clearTimeout(this.timer);
      this.settled = true;
      this.response?.destroy();
      if (out.error) this.note(`loom: ${out.error}\n`);
      await this.sink?.end();
      this.finish(this.result(out));
    }
  }

  /** Why the exchange ended early: our own stop or timeout first, then what the socket said. */
  private failure(err: unknown): HttpFailure {
    if (this.timedOut) return new HttpFailure(HTTP_EXIT.timeout, `timeout after ${this.req.timeoutMs} ms`);
    if (this.stoppedFor && this.stoppedFor !== 'fence') return new HttpFailure(HTTP_EXIT.failed, `request stopped (${this.stoppedFor})`);
    if (err instanceof HttpFailure) return err;
    return describeError(err as NodeJS.ErrnoException, this.current ?? new URL(this.req.http.url));
  }

  /** The URL being requested now (errors name it). */
  private current: URL | undefined;

  /** Sends the request and each redirect; reads the final body. */
  private async exchange(): Promise<Partial<RunResult>> {
    const spec = this.req.http;
    const expect = parseExpect(spec.expect || DEFAULT_EXPECT);
    const maxRedirects = spec.maxRedirects ?? HTTP_LIMITS.defaultRedirects;
    let url = new URL(spec.url);
    let method = (spec.method || 'GET').toUpperCase();
    let body = Buffer.from(spec.body ?? Buffer.alloc(0));
    let headers = [...(spec.headers ?? [])];
    if (!hasHeader(headers, 'user-agent') && this.req.userAgent) headers.push({ name: 'User-Agent', value: this.req.userAgent });
    if (!hasHeader(headers, 'accept')) headers.push({ name: 'Accept', value: '*/*' });
    for (let hops = 0; ; hops++) {
      this.current = url;
      const res = await this.send(url, method, headers, body);
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (status >= 300 && status < 400 && status !== 304 && location && maxRedirects > 0) {
        res.resume();
        if (hops >= maxRedirects) throw new HttpFailure(HTTP_EXIT.redirects, `more than ${maxRedirects} redirects (last to ${location.slice(0, 200)})`);
        let next: URL;
        try {
          next = new URL(location, url);
        } catch {
          throw new HttpFailure(HTTP_EXIT.failed, `redirect to an invalid URL "${location.slice(0, 200)}"`);
        }
        if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new HttpFailure(HTTP_EXIT.failed, `redirect to unsupported scheme ${next.protocol}`);
        const change = redirected(status, method);
        if (!change.keepBody) {
          body = Buffer.alloc(0);
          headers = headers.filter((h) => h.name.toLowerCase() !== 'content-type');
        }
        if (next.origin !== url.origin) headers = headers.filter((h) => !CREDENTIAL_HEADERS.has(h.name.toLowerCase()));
        method = change.method;
        url = next;
        continue;
      }
      const bodyBytes = await this.readBody(res);
      const line = `HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`;
      if (!statusExpected(status, expect)) return { exitCode: HTTP_EXIT.status, reason: `${line} (expected ${spec.expect || DEFAULT_EXPECT})` };
      return { exitCode: 0, reason: line, ...bodyBytes };
    }
  }

  private send(url: URL, method: string, headers: { name: string; value: string }[], body: Buffer): Promise<http.IncomingMessage> {
    this.note(`> ${method} ${url.href}\n`);
    return new Promise((resolve, reject) => {
      const options: https.RequestOptions = {
        method, agent: false, signal: this.abort.signal,
        headers: { ...headerObject(headers), ...(body.length > 0 || ['POST', 'PUT', 'PATCH'].includes(method) ? { 'Content-Length': String(body.length) } : {}) },
        ...(url.protocol === 'https:' && this.req.http.caPem ? { ca: this.req.http.caPem } : {}),
      };
      const request = (url.protocol === 'https:' ? https : http).request(url, options, (res) => {
        this.response = res;
        this.note(`< HTTP/${res.httpVersion} ${res.statusCode} ${res.statusMessage ?? ''}\n`);
        for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) this.note(`< ${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\n`);
        resolve(res);
      });
      request.on('error', reject);
      request.end(body.length > 0 ? body : undefined);
    });
  }

  /** Streams the body to stdout; returns it as the result if it fits, or why not. */
  private readBody(res: http.IncomingMessage): Promise<Partial<RunResult>> {
    const kept: Buffer[] = [];
    let total = 0;
    return new Promise((resolve, reject) => {
      res.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (total <= RESULT_MAX_BYTES) kept.push(chunk);
        this.sink!.write(STREAM_STDOUT, chunk);
      });
      res.once('error', reject);
      res.once('close', () => {
        if (!res.complete) return reject(new HttpFailure(HTTP_EXIT.receive, `connection closed after ${total} bytes of the response body`));
        if (total > RESULT_MAX_BYTES) return resolve({ resultError: `response body is ${total} bytes > the ${RESULT_MAX_BYTES}-byte result limit: it is in the log only` });
        resolve({ result: Buffer.concat(kept, total) });
      });
    });
  }

  private note(text: string): void {
    this.sink?.write(STREAM_STDERR, Buffer.from(text));
  }

  private result(out: Partial<RunResult>): RunResult {
    const stdout = this.sink?.stdoutTail;
    const stderr = this.sink?.stderrTail;
    return {
      ...out,
      timedOut: this.timedOut,
      ...(this.stoppedFor ? { stoppedFor: this.stoppedFor } : {}),
      stdoutTail: stdout?.toBuffer() ?? Buffer.alloc(0),
      stderrTail: stderr?.toBuffer() ?? Buffer.alloc(0),
      stdoutTruncated: stdout?.truncated ?? false,
      stderrTruncated: stderr?.truncated ?? false,
      stdoutBytes: stdout?.totalBytes ?? 0,
      stderrBytes: stderr?.totalBytes ?? 0,
      startedAtMs: this.startedAtMs,
      finishedAtMs: Date.now(),
    };
  }

  private emitProgress(): void {
    notifyProgress(this.listeners, this.opts.log);
  }
}

/** Starts one HTTP task attempt. Never throws: every failure is in the handle's result. */
export function startHttp(req: HttpRunRequest, opts: HttpRunnerOptions = {}): RunHandle {
  return new HttpAttempt(req, opts);
}
