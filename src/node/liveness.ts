/**
 * Declares silent nodes dead. Every node rewrites its /node/<name> key on
 * each keepalive tick (a heartbeat) and fences itself TTL − margin after the
 * send time of its last committed one (membership.ts). A survivor that has
 * seen no new revision of that key for a full TTL of its own clock therefore
 * knows the node has stopped acting, and deletes the key, guarded by the
 * revision it saw; the delete is what the requeuer reacts to.
 *
 * Why not just wait for the lease: an etcd leader that takes over restarts
 * every lease at full TTL + an election timeout, so a node that died with
 * the etcd leader kept its lease (and its tasks) ~2 s longer than TTL.
 *
 * Safety does not depend on which survivor acts or how stale its view is:
 * the revision compare fails if the node wrote since, and then the survivor
 * starts its clock again from the revision it read back.
 */
import { NodeDirectory } from '../store/node-directory';
import { Membership } from '../store/membership';

export interface LivenessDeps {
  directory: NodeDirectory;
  membership: Pick<Membership, 'declareDead'>;
  self: string;
  /** How long a key must stay unchanged: the lease TTL. */
  silentMs: number;
  log: (msg: string) => void;
  /** Called after this node deleted a silent node's key (before the watch reports it). */
  onDeclared?: (name: string, lease: string) => void;
  checkEveryMs?: number;
}

export class Liveness {
  private timer: NodeJS.Timeout | undefined;
  private readonly busy = new Set<string>();
  /** Names not to try again before the given time (the last attempt failed or found the key changed or gone). */
  private readonly notBefore = new Map<string, number>();
  declared = 0;

  constructor(private readonly deps: LivenessDeps) {}

  start(): void {
    this.timer = setInterval(() => this.check(), this.deps.checkEveryMs ?? 200);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  check(): void {
    const now = Date.now();
    for (const s of this.deps.directory.silent(this.deps.self, this.deps.silentMs, now)) {
      if (this.busy.has(s.name) || (this.notBefore.get(s.name) ?? 0) > now) continue;
      this.busy.add(s.name);
      void this.deps.membership
        .declareDead(s.name, s.lease, s.modRevision)
        .then(({ dead, current }) => {
          if (dead) {
            this.declared++;
            this.notBefore.delete(s.name);
            this.deps.log(`node ${s.name} declared dead: its key unchanged for ${Date.now() - s.seenAtMs} ms (lease ${s.lease})`);
            this.deps.onDeclared?.(s.name, s.lease);
          } else {
            // It wrote since (start the clock again from what was read back), or its key is gone already.
            if (current) this.deps.directory.observe(s.name, String(current.lease), current.mod_revision);
            this.notBefore.set(s.name, Date.now() + 500);
          }
        })
        .catch(() => this.notBefore.set(s.name, Date.now() + 500))
        .finally(() => this.busy.delete(s.name));
    }
  }
}
