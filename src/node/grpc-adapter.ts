/**
 * The one adapter between async handlers and grpc-js callbacks: a handler
 * returns or throws; the adapter answers exactly once, and maps every error
 * through the single code table (code in `loom-code` metadata).
 *
 * A handler gets a CallContext: an AbortSignal that fires when the client
 * goes away, and the caller's identity, which the adapter derives through
 * AdapterOptions.identify (src/node/tls.ts) — the only place it is derived.
 */
import * as grpc from '@grpc/grpc-js';
import { LoomError } from '../core/errors';
import { KeyedQueue } from '../core/keyed-queue';
import { nextTurn } from '../core/sleep';
import { toServiceError } from '../wire/grpc-errors';
import { Identity, LOCAL_IDENTITY } from './tls';

export interface CallContext {
  signal: AbortSignal;
  identity: Identity;
}

export interface AdapterOptions {
  onError?: (err: unknown) => void;
  /** Who is calling (may throw PERMISSION_DENIED); default: everyone is the local user. */
  identify?: (call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>) => Identity;
}

function options(o: AdapterOptions | ((err: unknown) => void) | undefined): AdapterOptions {
  return typeof o === 'function' ? { onError: o } : (o ?? {});
}

/** What a request that could not be decoded becomes (answered INVALID_ARGUMENT by the adapter). */
class MalformedRequest {
  constructor(readonly reason: string) {}
}

/** Requests larger than this are decoded when their handler is about to run (see LargeRequest). */
const DECODE_LATER_BYTES = 1024 * 1024;

/**
 * A large request's bytes, decoded just before its handler runs, one at a
 * time and each in a loop turn of its own. grpc-js decodes a message as its
 * last frame arrives, and the concurrent streams of a connection finish
 * together: a dozen 16 MiB submits decoded in one turn would hold the event
 * loop for over a second, and the lease's keepalives with it.
 */
class LargeRequest {
  constructor(
    readonly bytes: Buffer,
    readonly decode: (bytes: Buffer) => unknown,
  ) {}
}

const largeDecodes = new KeyedQueue();

function decoded(decode: (bytes: Buffer) => unknown, bytes: Buffer): unknown {
  try {
    return decode(bytes);
  } catch (err) {
    return new MalformedRequest((err as Error)?.message ?? String(err));
  }
}

/**
 * The service definition with request decoding that never throws: grpc-js
 * would answer a malformed message with a bare INTERNAL; the adapter answers
 * INVALID_ARGUMENT with loom's code instead.
 */
export function tolerantService<S extends grpc.ServiceDefinition>(service: S): S {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, def] of Object.entries(service)) {
    const m = def as grpc.MethodDefinition<unknown, unknown>;
    out[name] = {
      ...m,
      requestDeserialize: (bytes: Buffer) =>
        bytes.length > DECODE_LATER_BYTES ? new LargeRequest(bytes, m.requestDeserialize) : decoded(m.requestDeserialize, bytes),
    };
  }
  return out as S;
}

async function request<Req>(req: Req | MalformedRequest | LargeRequest): Promise<Req> {
  if (req instanceof LargeRequest) {
    const large = req;
    req = (await largeDecodes.run('decode', async () => {
      await nextTurn();
      return decoded(large.decode, large.bytes);
    })) as Req | MalformedRequest;
  }
  if (req instanceof MalformedRequest) throw new LoomError('INVALID_ARGUMENT', `malformed request: ${req.reason.slice(0, 200)}`);
  return req;
}

/** An AbortSignal that fires when the client cancels or the call ends. */
function callSignal(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const abort = () => controller.abort(new LoomError('CANCELLED', 'client went away'));
  call.on('cancelled', abort);
  return { signal: controller.signal, done: () => call.removeListener('cancelled', abort) };
}

export function unary<Req, Res>(
  fn: (req: Req, ctx: CallContext) => Promise<Res>,
  opts?: AdapterOptions | ((err: unknown) => void),
): grpc.handleUnaryCall<Req, Res> {
  const { onError, identify } = options(opts);
  return (call, callback) => {
    const { signal, done } = callSignal(call as never);
    let answered = false;
    Promise.resolve()
      .then(async () => fn(await request(call.request), { signal, identity: identify ? identify(call as never) : LOCAL_IDENTITY }))
      .then(
        (res) => {
          if (!answered) {
            answered = true;
            callback(null, res);
          }
        },
        (err) => {
          onError?.(err);
          if (!answered) {
            answered = true;
            callback(toServiceError(err) as grpc.ServiceError);
          }
        },
      )
      .finally(done);
  };
}

export function serverStream<Req, Res>(
  fn: (req: Req, write: (msg: Res) => Promise<void>, ctx: CallContext) => Promise<void>,
  opts?: AdapterOptions | ((err: unknown) => void),
): grpc.handleServerStreamingCall<Req, Res> {
  const { onError, identify } = options(opts);
  return (call) => {
    const { signal, done } = callSignal(call as never);
    const write = (msg: Res): Promise<void> => {
      if (signal.aborted) return Promise.reject(new LoomError('CANCELLED', 'client went away'));
      if (call.write(msg)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const onDrain = () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
        const onAbort = () => {
          call.removeListener('drain', onDrain);
          reject(new LoomError('CANCELLED', 'client went away'));
        };
        call.once('drain', onDrain);
        signal.addEventListener('abort', onAbort, { once: true });
      });
    };
    Promise.resolve()
      .then(async () => fn(await request(call.request), write, { signal, identity: identify ? identify(call as never) : LOCAL_IDENTITY }))
      .then(
        () => {
          if (!signal.aborted) call.end();
        },
        (err) => {
          if (signal.aborted) return;
          onError?.(err);
          call.emit('error', toServiceError(err));
        },
      )
      .finally(done);
  };
}
