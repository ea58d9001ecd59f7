/**
 * The web dashboard, served by the HTTP API's listener at `/` on every node:
 * static files from ui/ (a page, its script and style) and the two small
 * libraries it imports (preact with its hooks, and htm), from node_modules
 * as published: no build step. Read once at start and kept in memory. The
 * hooks module imports "preact" by name; that one import is pointed at the
 * served file, so the page needs no inline import map (and its Content
 * Security Policy allows scripts from the node only).
 *
 * The files hold no cluster data; the page reads everything through
 * /api/v1 with the caller's identity (its client certificate on a TLS node),
 * so it shows and allows what the API does.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LoomError } from '../core/errors';

export interface Asset {
  type: string;
  body: Buffer;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** ui/ beside dist/ (a checkout) or in the installed package: the first dir up from here that has ui/index.html. */
function uiDir(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'ui', 'index.html'))) return path.join(dir, 'ui');
  }
  throw new LoomError('INTERNAL', `the dashboard's files (ui/index.html) are not found above ${__dirname}: a broken install`);
}

/** URL path → file: the page's own files, then its libraries (import-mapped in index.html). */
function files(): Record<string, string> {
  const ui = uiDir();
  const out: Record<string, string> = { '/': path.join(ui, 'index.html') };
  for (const f of fs.readdirSync(ui)) if (f !== 'index.html' && TYPES[path.extname(f)]) out[`/ui/${f}`] = path.join(ui, f);
  out['/ui/vendor/preact.mjs'] = require.resolve('preact');
  out['/ui/vendor/hooks.mjs'] = require.resolve('preact/hooks');
  out['/ui/vendor/htm.mjs'] = path.join(path.dirname(require.resolve('htm')), 'htm.mjs');
  return out;
}

/** Every asset by URL path. */
export function dashboardAssets(): Map<string, Asset> {
  const out = new Map<string, Asset>();
  for (const [url, file] of Object.entries(files())) {
    let body = fs.readFileSync(file);
    if (url === '/ui/vendor/hooks.mjs') body = Buffer.from(body.toString('utf8').replace(/from\s*["']preact["']/g, 'from"./preact.mjs"'));
    out.set(url, { type: TYPES[path.extname(file)] ?? 'application/octet-stream', body });
  }
  return out;
}

/** Headers of every dashboard file: scripts and styles from the node only, never framed (its buttons act). */
export const DASHBOARD_HEADERS: Record<string, string> = {
  'cache-control': 'no-cache',
  'x-content-type-options': 'nosniff',
  'content-security-policy': "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};
