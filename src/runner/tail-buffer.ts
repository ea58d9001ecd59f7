/**
 * Keeps the last `limitBytes` bytes of a stream. A ring buffer that starts
 * small and doubles up to the limit, so a task that prints little costs
 * little, and a task that prints gigabytes costs at most `limitBytes`
 * (briefly ~1.5x while growing). Each push copies only the bytes it keeps.
 */
const INITIAL_CAPACITY = 1024;

export class TailBuffer {
  private readonly limit: number;
  private ring: Buffer = Buffer.alloc(0);
  /** Index of the oldest kept byte; non-zero only once the ring is full at the limit. */
  private start = 0;
  /** Bytes currently kept. */
  private kept = 0;
  /** Bytes ever pushed. */
  private total = 0;

  constructor(limitBytes: number) {
    if (!Number.isFinite(limitBytes) || limitBytes < 0) throw new RangeError(`bad tail limit ${limitBytes}`);
    this.limit = Math.floor(limitBytes);
  }

  /** Bytes ever pushed (kept or not). */
  get totalBytes(): number {
    return this.total;
  }

  /** True once some pushed bytes have been dropped. */
  get truncated(): boolean {
    return this.total > this.kept;
  }

  push(data: Buffer): void {
    this.total += data.length;
    if (this.limit === 0 || data.length === 0) return;

    if (data.length >= this.limit) {
      // Only the end of this chunk survives: replace everything.
      if (this.ring.length < this.limit) this.ring = Buffer.allocUnsafe(this.limit);
      data.copy(this.ring, 0, data.length - this.limit);
      this.start = 0;
      this.kept = this.limit;
      return;
    }

    const cap = this.ring.length;
    if (this.kept + data.length > cap && cap < this.limit) this.grow(this.kept + data.length);

    // Write at the ring's end, wrapping; drop the oldest bytes on overflow.
    const ringCap = this.ring.length;
    const writeAt = (this.start + this.kept) % ringCap;
    const first = Math.min(data.length, ringCap - writeAt);
    data.copy(this.ring, writeAt, 0, first);
    if (first < data.length) data.copy(this.ring, 0, first);
    const newKept = this.kept + data.length;
    if (newKept > ringCap) {
      this.start = (this.start + newKept - ringCap) % ringCap;
      this.kept = ringCap;
    } else {
      this.kept = newKept;
    }
  }

  /** A copy of the kept bytes, oldest first. */
  toBuffer(): Buffer {
    const cap = this.ring.length;
    if (this.kept === 0) return Buffer.alloc(0);
    const out = Buffer.allocUnsafe(this.kept);
    const first = Math.min(this.kept, cap - this.start);
    this.ring.copy(out, 0, this.start, this.start + first);
    if (first < this.kept) this.ring.copy(out, first, 0, this.kept - first);
    return out;
  }

  /** Grows the (not yet wrapped) ring to hold at least `needed` bytes, capped at the limit. */
  private grow(needed: number): void {
    const cap = Math.min(this.limit, Math.max(needed, this.ring.length * 2, INITIAL_CAPACITY));
    const next = Buffer.allocUnsafe(cap);
    // Below the limit the ring never wraps, so its content is ring[0, kept).
    this.ring.copy(next, 0, 0, this.kept);
    this.ring = next;
    this.start = 0;
  }
}
