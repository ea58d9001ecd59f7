/**
 * Looks at etcd's space every few seconds (for the submit gate) and, on the
 * one node chosen by rendezvous over the live nodes, maintains it: compacts,
 * defragments members one at a time, disarms the NOSPACE alarm (see
 * store/storage.ts, core/storage.ts). The node counts itself among the live
 * ones: under the alarm no node can rejoin (etcd refuses lease grants), so a
 * node whose directory is empty still maintains rather than wait for a peer.
 */
import { takesTurn } from '../core/steal-policy';
import { StorageWatch } from '../etcd/space';

export interface StorageKeeperDeps {
  watch: StorageWatch;
  self: string;
  liveNodes: () => string[];
  everyMs: number;
  log: (m: string) => void;
}

export class StorageKeeper {
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(private readonly d: StorageKeeperDeps) {}

  start(): void {
    void this.tick();
    this.timer = setInterval(() => void this.tick(), this.d.everyMs);
    this.timer.unref();
  }

  /** The last look at etcd's space (for /metrics); undefined before the first answer. */
  space(): { quotaBytes: number; nospace: boolean; members: { endpoint: string; dbSize: number }[] } | undefined {
    const s = this.d.watch.last;
    return s.members.length > 0 ? s : undefined;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.d.watch.close();
  }

  async tick(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      await this.d.watch.refresh();
      if (takesTurn(this.d.self, this.d.liveNodes(), 'storage', 1)) await this.d.watch.maintain();
    } catch (e) {
      this.d.log(`storage check failed: ${(e as Error).message}`);
    } finally {
      this.running = false;
    }
  }
}
