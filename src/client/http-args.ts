/**
 * `loom run --http URL`: the flags of an HTTP task, curl-like. --data makes
 * the default method POST (as curl -d does); --data @FILE and --http-ca FILE
 * are read here, on the client, so the file need not exist on any node.
 */
import * as fs from 'fs';
import type { Argv } from 'yargs';
import { invalid } from '../core/errors';
import { HTTP_LIMITS } from '../core/task-kind';
import type { HttpSpec } from '../gen/loom';
import { list, str } from './spec-flags';


export const HTTP_FLAGS = ['http', 'method', 'header', 'data', 'expect', 'http-ca', 'max-redirects'] as const;

export function httpOptions(y: Argv): Argv {
  return y
    .option('http', { type: 'string', requiresArg: true, describe: 'make this HTTP(S) request instead of running a command; body on stdout and as the result' })
    .option('method', { type: 'string', requiresArg: true, describe: '--http method (default GET, POST with --data)' })
    .option('header', { type: 'string', requiresArg: true, describe: "--http request header 'Name: value' (repeatable; values hidden from other users)" })
    .option('data', { type: 'string', requiresArg: true, describe: '--http request body: the text, or @FILE to send a file' })
    .option('expect', { type: 'string', requiresArg: true, describe: '--http statuses that count as success (default 200-299), e.g. 200-299,304' })
    .option('http-ca', { type: 'string', requiresArg: true, describe: '--http PEM CA file the https server must chain to (instead of the system roots)' })
    .option('max-redirects', { type: 'string', requiresArg: true, describe: `--http redirects followed (default ${HTTP_LIMITS.defaultRedirects}; 0 = none, a 3xx is the answer)` });
}

function readFlagFile(file: string, flag: string, limit: number): Buffer {
  let data: Buffer;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > limit) throw new Error(`${st.size} bytes > limit ${limit}`);
    data = fs.readFileSync(file);
  } catch (err) {
    throw invalid(`cannot read ${flag} file ${file}: ${(err as Error).message}`);
  }
  return data;
}

export function parseHeader(text: string): { name: string; value: string } {
  const at = text.indexOf(':');
  if (at <= 0) throw invalid(`invalid --header "${text.slice(0, 80)}": expected 'Name: value'`);
  return { name: text.slice(0, at).trim(), value: text.slice(at + 1).trim() };
}

/**
 * The HttpSpec the flags ask for (validated later with the whole spec by
 * validateSpec), or undefined without --http. An --http flag without --http
 * is refused rather than ignored.
 */
export function httpSpecOf(opts: Record<string, unknown>): HttpSpec | undefined {
  const url = str(opts.http);
  if (url === undefined) {
    const stray = HTTP_FLAGS.find((f) => f !== 'http' && opts[f] !== undefined);
    if (stray) throw invalid(`--${stray} is for HTTP tasks: give the URL with --http`);
    return undefined;
  }
  const data = str(opts.data);
  const body = data === undefined ? Buffer.alloc(0) : data.startsWith('@') ? readFlagFile(data.slice(1), '--data', HTTP_LIMITS.bodyBytes) : Buffer.from(data);
  const ca = str(opts['http-ca']);
  const redirects = str(opts['max-redirects']);
  let maxRedirects: number | undefined;
  if (redirects !== undefined) {
    maxRedirects = /^\d+$/.test(redirects) ? Number(redirects) : NaN;
    if (!(maxRedirects <= HTTP_LIMITS.maxRedirects)) throw invalid(`invalid --max-redirects "${redirects}": expected 0 to ${HTTP_LIMITS.maxRedirects}`);
  }
  return {
    method: str(opts.method) ?? (data === undefined ? 'GET' : 'POST'),
    url,
    headers: list(opts.header).map(parseHeader),
    body,
    expect: str(opts.expect) ?? '',
    caPem: ca === undefined ? '' : readFlagFile(ca, '--http-ca', HTTP_LIMITS.caBytes).toString('utf8'),
    ...(maxRedirects !== undefined ? { maxRedirects } : {}),
  };
}
