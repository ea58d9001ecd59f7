/** Flag parsing shared by the `loom` commands that src/bin runs. */
import { LoomError } from '../core/errors';
import type { Argv } from 'yargs';
import { parseDecimal } from '../core/numbers';

/**
 * A numeric flag's value. Numeric flags are declared without a yargs type
 * (and parsed with parse-numbers off) so that a typo is reported as typed:
 * yargs's number type would turn `--slots abc` into NaN before any check
 * could quote it; its number parsing would also take hex (`0x10`). Ranges
 * are checked where the value is used.
 */
export function numberFlag(value: unknown, flag: string): number {
  if (typeof value === 'number') return value;
  if (Array.isArray(value)) throw new LoomError('INVALID_ARGUMENT', `${flag} given more than once`);
  if (typeof value !== 'string') throw new LoomError('INVALID_ARGUMENT', `${flag} must be a number (got ${String(value)})`);
  const n = parseDecimal(value);
  if (n === undefined) throw new LoomError('INVALID_ARGUMENT', `${flag} must be a number (got "${value}")`);
  return n;
}

/**
 * The settings every src/bin parser ends with: numbers kept as typed (see
 * numberFlag), unknown flags refused, no yargs version flag (loom has its
 * own), and a yargs complaint turned into INVALID_ARGUMENT so that it exits
 * with the code every other bad input does.
 */
export function strictFlags<T>(parser: Argv<T>): Argv<T> {
  return parser
    .parserConfiguration({ 'parse-numbers': false })
    .strict()
    .help()
    .version(false)
    .fail((msg, err) => {
      throw err instanceof LoomError ? err : new LoomError('INVALID_ARGUMENT', msg ?? err?.message ?? 'invalid arguments');
    });
}
