#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * The `loom` executable: `loom node ...` runs a node (src/bin/node-command),
 * `loom certs ...` makes certificates (src/bin/certs-command), anything else
 * is the client CLI, which uses LOOM_TLS_CA/CERT/KEY for mutual TLS. The only client file that touches
 * `process`: it wires streams and signals, sets the exit status, and lets
 * the process end on its own so piped output is never cut off.
 */
import type * as CliModule from '../client/cli';
import type * as ClientTlsModule from '../wire/tls';
import * as path from 'path';
import { compileCacheFile, enableCompileCache } from './compile-cache';

interface NodeCommandModule {
  main(argv: string[]): Promise<number>;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function exitStatusOf(err: unknown): number {
  const code = (err as { exitCode?: unknown } | null)?.exitCode;
  return typeof code === 'number' ? code : 1;
}

/** Resolves once everything written so far has been handed to the OS. */
function flush(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || !stream.writable) return resolve();
    stream.write('', () => resolve());
  });
}

async function runNode(argv: string[]): Promise<void> {
  try {
    // Loaded only here so that the client never loads node code.
    const mod = require('./node-command') as NodeCommandModule;
    process.exitCode = await mod.main(argv);
  } catch (err) {
    process.stderr.write(`loom: ${describe(err)}\n`);
    process.exitCode = exitStatusOf(err);
  }
}

async function runCerts(argv: string[]): Promise<void> {
  try {
    const mod = require('./certs-command') as NodeCommandModule;
    process.exitCode = await mod.main(argv);
  } catch (err) {
    process.stderr.write(`loom certs: ${describe(err)}\n`);
    process.exitCode = exitStatusOf(err);
  }
}

async function runClient(argv: string[]): Promise<void> {
  const handlers: ((signal: NodeJS.Signals) => void)[] = [];
  let signals = 0;
  const onProcessSignal = (signal: NodeJS.Signals) => {
    signals++;
    // A third interrupt means the CLI is stuck: give up at once.
    if (signals >= 3) process.exit(signal === 'SIGTERM' ? 143 : 130);
    for (const fn of handlers) fn(signal);
  };
  const onSignal = (fn: (signal?: NodeJS.Signals) => void) => {
    if (handlers.length === 0) {
      process.on('SIGINT', onProcessSignal);
      process.on('SIGTERM', onProcessSignal);
    }
    handlers.push(fn);
  };
  // The reader went away (`loom logs x | head`): stop quietly.
  const onStreamError = (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 141);
    process.stderr.write(`loom: ${describe(err)}\n`);
    process.exit(1);
  };
  process.stdout.on('error', onStreamError);
  process.stderr.on('error', () => undefined);
  process.on('uncaughtException', (err) => {
    process.stderr.write(`loom: internal error: ${describe(err)}\n`);
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    process.stderr.write(`loom: internal error: ${describe(err)}\n`);
    process.exit(1);
  });

  // The client is a short process: a fifth of its start-up went to compiling its modules (see compile-cache).
  const root = path.resolve(__dirname, '..', '..', '..');
  const cacheFile = compileCacheFile(process.env, root);
  if (cacheFile) enableCompileCache(cacheFile, root);

  let code: number;
  try {
    // LOOM_TLS_CA/CERT/KEY: every LoomApi the CLI makes uses them (read on first use).
    const tls = require('../wire/tls') as typeof ClientTlsModule;
    tls.setDefaultClientTls(tls.tlsFilesFromEnv(process.env));
    const cli = require('../client/cli') as typeof CliModule;
    code = await cli.runCli(argv, {
      stdout: process.stdout,
      stderr: process.stderr,
      env: process.env,
      isTTY: Boolean(process.stdout.isTTY),
      onSignal,
    });
  } catch (err) {
    process.stderr.write(`loom: ${describe(err)}\n`);
    code = exitStatusOf(err);
  }
  process.exitCode = code;
  process.removeListener('SIGINT', onProcessSignal);
  process.removeListener('SIGTERM', onProcessSignal);
  await Promise.all([flush(process.stdout), flush(process.stderr)]);
  // Everything is written; if some handle still keeps the loop alive, do
  // not hang around for it.
  setTimeout(() => process.exit(code), 1000).unref();
}

/**
 * grpc-js gives TLS the dialled host as server name, an IP address included;
 * Node ignores such a name but warns once (DEP0123), which the user can do
 * nothing about. Only that warning is dropped.
 */
function dropIpServerNameWarning(): void {
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((...args: unknown[]) => {
    const opt = args[1];
    const code = typeof opt === 'object' && opt !== null ? (opt as { code?: unknown }).code : args[2];
    if (code === 'DEP0123') return;
    emit(...args);
  }) as typeof process.emitWarning;
}

dropIpServerNameWarning();
const argv = process.argv.slice(2);
// `loom node drain|resume NAME` is a client command; `loom node [flags]` runs a node.
const isNodeDaemon = argv[0] === 'node' && argv[1] !== 'drain' && argv[1] !== 'resume';
void (isNodeDaemon ? runNode(argv.slice(1)) : argv[0] === 'certs' ? runCerts(argv.slice(1)) : runClient(argv));
