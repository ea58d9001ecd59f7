import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  encodeFrame,
  FrameDecoder,
  readFrames,
  STREAM_STDERR,
  STREAM_STDOUT,
} from '../../src/runner/log-file';

const NON_UTF8 = Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80, 0x0a]);

function sampleFrames(): Array<{ stream: number; data: Buffer }> {
  return [
    { stream: STREAM_STDOUT, data: Buffer.from('hello\n') },
    { stream: STREAM_STDERR, data: NON_UTF8 },
    { stream: STREAM_STDOUT, data: Buffer.alloc(0) },
    { stream: STREAM_STDERR, data: Buffer.alloc(200_000, 7) }, // spans several 64 KiB reads
    { stream: STREAM_STDOUT, data: Buffer.from('bye') },
  ];
}

function encodeAll(frames: Array<{ stream: number; data: Buffer }>): Buffer {
  return Buffer.concat(frames.map((f) => encodeFrame(f.stream, f.data)));
}

/** Buffer.equals per frame: jest's deep equality walks buffers byte by byte and is slow on big ones. */
function expectSameFrames(got: Array<{ stream: number; data: Buffer }>, want: Array<{ stream: number; data: Buffer }>) {
  expect(got.map((f) => [f.stream, f.data.length])).toEqual(want.map((f) => [f.stream, f.data.length]));
  got.forEach((f, i) => expect(f.data.equals(want[i].data)).toBe(true));
}

async function collect(p: string, fromOffset?: number) {
  const out = [];
  for await (const f of readFrames(p, { fromOffset })) out.push(f);
  return out;
}

describe('log-file', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'loom-logfile-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('encodeFrame lays out stream id, big-endian length, data', () => {
    const frame = encodeFrame(STREAM_STDERR, Buffer.from('abc'));
    expect([...frame]).toEqual([2, 0, 0, 0, 3, 0x61, 0x62, 0x63]);
  });

  test('decoder round-trips frames pushed whole, byte by byte and in odd slices', () => {
    const frames = sampleFrames();
    const bytes = encodeAll(frames);

    expectSameFrames(new FrameDecoder().push(bytes), frames);

    const byByte = new FrameDecoder();
    const got1 = [];
    for (let i = 0; i < bytes.length; i++) got1.push(...byByte.push(bytes.subarray(i, i + 1)));
    expectSameFrames(got1, frames);
    expect(byByte.bufferedBytes).toBe(0);

    const sliced = new FrameDecoder();
    const got2 = [];
    for (let at = 0, step = 1; at < bytes.length; at += step, step = (step * 7) % 9973 + 1) {
      got2.push(...sliced.push(bytes.subarray(at, at + step)));
    }
    expectSameFrames(got2, frames);
  });

  test('decoder keeps a partial frame until the rest arrives', () => {
    const bytes = encodeFrame(STREAM_STDOUT, NON_UTF8);
    const dec = new FrameDecoder();
    expect(dec.push(bytes.subarray(0, 3))).toEqual([]);
    expect(dec.push(bytes.subarray(3, 8))).toEqual([]);
    expect(dec.bufferedBytes).toBe(8);
    const frames = dec.push(bytes.subarray(8));
    expect(frames).toHaveLength(1);
    expect(frames[0].data.equals(NON_UTF8)).toBe(true);
  });

  test('decoder rejects an oversized length as corrupt', () => {
    const bad = Buffer.from([1, 0x01, 0x00, 0x00, 0x01]); // 16 MiB + 1
    expect(() => new FrameDecoder().push(bad)).toThrow('corrupt log frame');
  });

  test('readFrames yields all frames with end offsets, and resumes from an offset', async () => {
    const frames = sampleFrames();
    const file = path.join(dir, 'a.log');
    fs.writeFileSync(file, encodeAll(frames));

    const all = await collect(file);
    expectSameFrames(all, frames);
    let expected = 0;
    for (let i = 0; i < frames.length; i++) {
      expected += 5 + frames[i].data.length;
      expect(all[i].endOffset).toBe(expected);
    }
    expect(all[all.length - 1].endOffset).toBe(fs.statSync(file).size);

    const rest = await collect(file, all[1].endOffset);
    expectSameFrames(rest, frames.slice(2));
    expect(await collect(file, all[all.length - 1].endOffset)).toEqual([]);
  });

  test('readFrames stops before a partial trailing frame and picks it up later', async () => {
    const file = path.join(dir, 'grow.log');
    const first = encodeFrame(STREAM_STDOUT, Buffer.from('one'));
    const second = encodeFrame(STREAM_STDERR, Buffer.alloc(70_000, 0xff));
    fs.writeFileSync(file, Buffer.concat([first, second.subarray(0, 66_000)]));

    const got = await collect(file);
    expect(got).toHaveLength(1);
    expect(got[0].endOffset).toBe(first.length);

    fs.appendFileSync(file, second.subarray(66_000));
    const more = await collect(file, got[0].endOffset);
    expect(more).toHaveLength(1);
    expect(more[0].stream).toBe(STREAM_STDERR);
    expect(more[0].data.equals(Buffer.alloc(70_000, 0xff))).toBe(true);
    expect(more[0].endOffset).toBe(first.length + second.length);
  });

  test('readFrames honours an aborted signal', async () => {
    const file = path.join(dir, 'c.log');
    fs.writeFileSync(file, encodeAll(sampleFrames()));
    const ac = new AbortController();
    ac.abort();
    await expect(collect2(file, ac.signal)).rejects.toBeDefined();
  });
});

async function collect2(p: string, signal: AbortSignal) {
  for await (const _ of readFrames(p, { signal })) {
    // consume
  }
}
