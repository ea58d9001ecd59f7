/** missingPart: what a short log file lacks of a stream, taken from the stream's tail. */
import { missingPart } from '../../src/node/logs';

const b = (s: string) => Buffer.from(s);

describe('missingPart', () => {
  it('is nothing when the file holds everything, or the total is unknown (older records)', () => {
    expect(missingPart(10, 10, b('0123456789'))).toBeUndefined();
    expect(missingPart(0, 0, b('abc'))).toBeUndefined();
  });

  it('takes exactly the missing end when the tail reaches back to where the file stops', () => {
    // Printed "abcdefghij"; the file has "abcd"; the tail keeps the last 8: "cdefghij".
    expect(missingPart(4, 10, b('cdefghij'))).toEqual({ data: b('efghij'), lost: 0 });
    // Nothing reached the file; the tail holds it all.
    expect(missingPart(0, 5, b('hello'))).toEqual({ data: b('hello'), lost: 0 });
    // The tail starts exactly where the file stops.
    expect(missingPart(4, 10, b('efghij'))).toEqual({ data: b('efghij'), lost: 0 });
  });

  it('says how many bytes neither the file nor the tail has', () => {
    // Printed 100 bytes; the file has 10; the tail the last 20: bytes 10..79 are lost.
    const tail = Buffer.alloc(20, 'z');
    expect(missingPart(10, 100, tail)).toEqual({ data: tail, lost: 70 });
  });
});
