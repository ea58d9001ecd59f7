/**
 * Why a node takes no new tasks although nobody drained it: its data dir is
 * below --min-free-disk (disk-watch.ts) or its CPUs are over --max-load
 * (core/steal-policy.ts loadHoldReason). The reasons, their log lines, and
 * one callback when one comes or goes; the node does the rest (hand back
 * what waits, pause the steal loop, publish).
 */
import { loadHoldReason } from '../core/steal-policy';

export interface WorkPauseDeps {
  diskReason: () => string | undefined;
  maxLoad: number;
  /** Drained or stopping: said when a reason goes but the node still takes nothing. */
  heldOtherwise: () => boolean;
  log: (msg: string) => void;
  onChange: (paused: boolean) => void;
}

export class WorkPause {
  private load: string | undefined;

  constructor(private readonly d: WorkPauseDeps) {}

  /** Every reason that holds now, or undefined (NodeInfo.paused_reason). */
  get reason(): string | undefined {
    return [this.d.diskReason(), this.load].filter(Boolean).join('; ') || undefined;
  }

  /** A new CPU figure; a crossing of --max-load is a change (the reason keeps the latest figure while it holds). */
  checkLoad(cpuBusy: number): void {
    const reason = loadHoldReason(cpuBusy, this.d.maxLoad, this.load !== undefined);
    const changed = (reason === undefined) !== (this.load === undefined);
    this.load = reason;
    if (changed) this.changed(reason, 'CPUs below --max-load again');
  }

  /** A reason came (`reason`) or went (`resumed` says which). */
  changed(reason: string | undefined, resumed: string): void {
    if (reason) {
      this.d.log(`not taking new tasks: ${reason} (running tasks go on)`);
    } else {
      const still = this.reason;
      const rest = still ? `still not taking new tasks: ${still}` : this.d.heldOtherwise() ? 'taking new tasks once the drain is resumed' : 'taking new tasks';
      this.d.log(`${resumed}: ${rest}`);
    }
    this.d.onChange(reason !== undefined);
  }
}
