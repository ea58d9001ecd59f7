import { parseDecimal } from '../../src/core/numbers';

describe('parseDecimal: numbers as users type them', () => {
  it.each([
    ['12', 12], [' 7 ', 7], ['-1.5', -1.5], ['+3', 3], ['.5', 0.5], ['2.', 2], ['9e2', 900], ['1E-1', 0.1],
  ])('%j is %d', (text, n) => expect(parseDecimal(text)).toBe(n));

  it.each([[''], [' '], ['0x10'], ['0o7'], ['0b1'], ['Infinity'], ['1e999'], ['abc'], ['1,5'], ['9.5e'], ['--1'], ['1 2']])(
    '%j is refused',
    (text) => expect(parseDecimal(text)).toBeUndefined(),
  );
});
