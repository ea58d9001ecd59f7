/**
 * The per-client limit on long calls (log streams, waits, runs) of one node,
 * whatever the transport (gRPC or HTTP): each identity may hold `limit` at
 * once. Node certificates are not counted (peers proxy logs for everyone),
 * nor is anyone without TLS (every caller is the same local user).
 */
import { LoomError } from '../core/errors';
import { Identity } from './tls';

export class ClientSlots {
  private readonly held = new Map<string, number>();

  constructor(
    private readonly limit: number,
    private readonly counted: boolean,
  ) {}

  /** Takes one of the caller's slots (RESOURCE_EXHAUSTED when none is left); returns its release, safe to call twice. */
  hold(id: Identity): () => void {
    if (!this.counted || id.role === 'node') return () => undefined;
    const n = this.held.get(id.name) ?? 0;
    if (n >= this.limit) {
      throw new LoomError('RESOURCE_EXHAUSTED', `too many concurrent log streams, waits and runs for ${id.name} on this node (limit ${this.limit})`);
    }
    this.held.set(id.name, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.held.get(id.name) ?? 1) - 1;
      if (left <= 0) this.held.delete(id.name);
      else this.held.set(id.name, left);
    };
  }
}
