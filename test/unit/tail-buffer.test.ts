import { TailBuffer } from '../../src/runner/tail-buffer';

/** Deterministic pseudo-random bytes, so failures reproduce. */
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    b[i] = x & 0xff;
  }
  return b;
}

describe('TailBuffer', () => {
  test('keeps everything below the limit', () => {
    const t = new TailBuffer(10);
    t.push(Buffer.from('abc'));
    t.push(Buffer.from('def'));
    expect(t.toBuffer().toString()).toBe('abcdef');
    expect(t.truncated).toBe(false);
  });

  test('keeps exactly the last limit bytes across wraps', () => {
    const t = new TailBuffer(5);
    t.push(Buffer.from('abc'));
    t.push(Buffer.from('defg'));
    expect(t.toBuffer().toString()).toBe('cdefg');
    expect(t.truncated).toBe(true);
    t.push(Buffer.from('hi'));
    expect(t.toBuffer().toString()).toBe('efghi');
  });

  test('a push at least as big as the limit replaces everything', () => {
    const t = new TailBuffer(4);
    t.push(Buffer.from('xy'));
    t.push(Buffer.from('0123456789'));
    expect(t.toBuffer().toString()).toBe('6789');
    t.push(Buffer.from('ab'));
    expect(t.toBuffer().toString()).toBe('89ab');
  });

  test('exactly the limit is not truncated', () => {
    const t = new TailBuffer(4);
    t.push(Buffer.from('ab'));
    t.push(Buffer.from('cd'));
    expect(t.toBuffer().toString()).toBe('abcd');
    expect(t.truncated).toBe(false);
  });

  test('limit 0 keeps nothing', () => {
    const t = new TailBuffer(0);
    expect(t.truncated).toBe(false);
    t.push(Buffer.from('abc'));
    expect(t.toBuffer().length).toBe(0);
    expect(t.truncated).toBe(true);
  });

  test('matches a reference model for random push sizes', () => {
    for (const limit of [1, 7, 1000, 5000]) {
      const t = new TailBuffer(limit);
      const all: Buffer[] = [];
      for (let i = 0; i < 300; i++) {
        const chunk = bytes((i * 37) % (limit * 2 + 3), i + limit);
        t.push(chunk);
        all.push(chunk);
        const whole = Buffer.concat(all);
        expect(t.toBuffer().equals(whole.subarray(Math.max(0, whole.length - limit)))).toBe(true);
        expect(t.truncated).toBe(whole.length > limit);
      }
    }
  });

  test('toBuffer returns a copy', () => {
    const t = new TailBuffer(8);
    t.push(Buffer.from('abcd'));
    const out = t.toBuffer();
    out[0] = 0x7a;
    expect(t.toBuffer().toString()).toBe('abcd');
  });

  test('many small pushes into a large limit stay fast', () => {
    const t = new TailBuffer(1 << 20);
    const chunk = Buffer.alloc(100, 1);
    const started = Date.now();
    for (let i = 0; i < 200_000; i++) t.push(chunk); // 20 MB in 100-byte pushes
    expect(t.toBuffer().length).toBe(1 << 20);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
