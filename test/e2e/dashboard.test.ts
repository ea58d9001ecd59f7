/**
 * The web dashboard in a real browser (Debian's Chromium, driven by
 * playwright-core) against three real nodes, each serving it: a task
 * submitted with the CLI appears and completes on the open page without a
 * reload; a task's page follows its output; a running task is cancelled
 * and a node drained and resumed from the page; with 100,000 tasks queued
 * the page still shows a page of them and turns to the next. Screenshots of
 * each step go to artifacts/dashboard/ (LOOM_ARTIFACTS to put them elsewhere).
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { Browser, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import { LoomApi } from '../../src/client/client';
import { TaskState } from '../../src/gen/loom';
import { waitFor } from '../support/etcd';
import { cli, ProcCluster, startCluster } from '../support/cluster';

jest.setTimeout(240_000);

// The page's globals, for the functions below that run in the browser.
declare const document: { querySelector(s: string): { textContent: string | null; getAttribute(n: string): string | null } | null };
declare const window: { loaded?: number };

const ARTIFACTS = process.env.LOOM_ARTIFACTS
  ? path.join(process.env.LOOM_ARTIFACTS, 'dashboard')
  : path.resolve(__dirname, '../../../artifacts/dashboard');

/** scripts/setup.sh installs it; LOOM_CHROMIUM names another. */
function chromiumPath(): string {
  if (process.env.LOOM_CHROMIUM) return process.env.LOOM_CHROMIUM;
  try {
    return execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('chromium is not installed: run scripts/setup.sh (it installs Debian\'s chromium), or set LOOM_CHROMIUM');
  }
}

let cluster: ProcCluster;
let api: LoomApi;
let browser: Browser;
let page: Page;
let base: string;

/** The node's HTTP API address, from its "up" line (printed just after it joins: waited for). */
async function httpBase(i: number): Promise<string> {
  const up = () => /http api (http:\/\/[\d.]+:\d+)\/api\/v1/.exec(cluster.nodes[i].output())?.[1];
  await waitFor(async () => up() !== undefined, { what: `node ${cluster.nodes[i].name} saying where its HTTP API listens`, timeoutMs: 30_000 });
  return up()!;
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

const node = () => ['-N', cluster.nodes[0].api];

beforeAll(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  cluster = await startCluster(3, ['--slots', '2', '--lease-ttl', '3', '--http-listen', '127.0.0.1:0']);
  api = new LoomApi(cluster.nodes[0].api);
  await waitFor(async () => (await api.nodes().catch(() => [])).length === 3, { what: 'three nodes up', timeoutMs: 60_000 }).catch((err) => {
    for (const n of cluster.nodes) process.stderr.write(`--- ${n.name}\n${n.output()}\n`);
    throw err;
  });
  // The page is served by the third node: what it shows comes through etcd, not from the node the CLI talks to.
  base = await httpBase(2);
  browser = await chromium.launch({
    executablePath: chromiumPath(),
    // As root Chromium needs --no-sandbox; the rest keeps it off the (closed) network.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${base}/`);
  await page.waitForSelector('[data-live="up"]');
  await page.waitForSelector('[data-table="nodes"] tbody tr:nth-child(3)');
  expect(errors).toEqual([]);
});

afterAll(async () => {
  await browser?.close();
  api?.close();
  await cluster?.stopAll();
});

test('a task submitted with the CLI appears and completes on the open page, without a reload', async () => {
  await page.evaluate(() => (window.loaded = 1));
  const run = await cli([...node(), 'run', '--json', 'sh', '-c', 'echo from-the-cli; sleep 1.5']);
  expect(run.code).toBe(0);
  const task = await api.list({ state: TaskState.COMPLETED, node: '', job: '', owner: '', pageSize: 10, pageToken: '' });
  const id = task.tasks.find((t) => t.spec?.command.join(' ').includes('from-the-cli'))!.id;
  const row = `[data-table="recent"] tr[data-task="${id}"]`;
  await page.waitForSelector(`${row} .s-completed`);
  await shot('1-overview-task-completed');
  // The page was never reloaded: what it shows came through its event stream.
  expect(await page.evaluate(() => window.loaded)).toBe(1);
  await page.click(`${row} a`);
  await page.waitForSelector('[data-log-state="ended"]');
  expect(await page.textContent('pre[data-log]')).toContain('from-the-cli');
});

test('a task\'s page follows its output live, and cancels it', async () => {
  const sub = await cli([...node(), 'run', '--detach', 'sh', '-c', 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done']);
  expect(sub.code).toBe(0);
  const id = sub.stdout.trim();
  await page.goto(`${base}/#/task/${id}`);
  await page.waitForFunction(() => /tick 3\b/.test(document.querySelector('pre[data-log]')?.textContent ?? ''));
  // Still following: later lines arrive on the same page.
  await page.waitForFunction(() => /tick 8\b/.test(document.querySelector('pre[data-log]')?.textContent ?? ''));
  await shot('2-task-live-output');
  await page.click('[data-action="cancel"]');
  await page.waitForSelector('h2 .s-cancelled');
  await shot('3-task-cancelled');
  expect((await api.get(id)).state).toBe(TaskState.CANCELLED);
});

test('drains and resumes a node from the page', async () => {
  await page.goto(`${base}/#/`);
  const row = '[data-table="nodes"] tr[data-node="e2"]';
  await page.click(`${row} [data-action="drain"]`);
  await page.waitForSelector(`${row} [data-action="resume"]`);
  await waitFor(async () => (await api.nodes()).find((n) => n.name === 'e2')?.draining === true, { what: 'e2 draining', timeoutMs: 20_000 });
  await shot('4-node-drained');
  await page.click(`${row} [data-action="resume"]`);
  await page.waitForSelector(`${row} [data-action="drain"]`);
  await waitFor(async () => (await api.nodes()).find((n) => n.name === 'e2')?.draining === false, { what: 'e2 resumed', timeoutMs: 20_000 });
});

test('with 100,000 tasks queued, the page shows one page of them and turns to the next', async () => {
  // Every node drained, so the queue stays as submitted.
  for (const n of cluster.nodes) expect((await cli([...node(), 'node', 'drain', n.name])).code).toBe(0);
  const file = path.join(cluster.dir, 'big.json');
  fs.writeFileSync(file, JSON.stringify({ jobs: [{ name: 'big', count: 100_000, task: { command: ['true'] } }] }));
  const sub = await cli([...node(), 'job', 'submit', file]);
  expect(sub.code).toBe(0);
  await page.goto(`${base}/#/`);
  await page.waitForFunction(() => document.querySelector('[data-card="queued"] .n')?.textContent === '100000', undefined, { timeout: 120_000 });
  await shot('5-overview-100k-queued');
  await page.goto(`${base}/#/tasks?state=queued`);
  await page.waitForSelector('[data-table="tasks"] tbody tr:nth-child(50)');
  const first = await page.getAttribute('[data-table="tasks"] tbody tr:first-child', 'data-task');
  expect(await page.locator('[data-table="tasks"] tbody tr').count()).toBe(50);
  await page.click('[data-action="next"]');
  await page.waitForFunction((id) => {
    const top = document.querySelector('[data-table="tasks"] tbody tr:first-child');
    return top && top.getAttribute('data-task') !== id;
  }, first);
  expect(await page.locator('[data-table="tasks"] tbody tr').count()).toBe(50);
  await shot('6-tasks-100k-page-2');
});
