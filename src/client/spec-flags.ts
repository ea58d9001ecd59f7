/**
 * Reading yargs' parsed flags (last, str, list), and parsers of `loom run`'s
 * task flags that turn one flag's text into a spec field, or throw
 * INVALID_ARGUMENT naming the flag (exit 2).
 */
import { invalid } from '../core/errors';
import { parseDurationMs } from '../core/duration';
import { parseDecimal } from '../core/numbers';
import { parseBytes } from '../core/fit';

/** A repeated flag's last value (yargs gives an array when a flag is given twice). */
export function last(value: unknown): unknown {
  return Array.isArray(value) ? value[value.length - 1] : value;
}

export function str(value: unknown): string | undefined {
  const v = last(value);
  return v === undefined || v === null ? undefined : String(v);
}

/** Every value of a repeatable flag. */
export function list(value: unknown): string[] {
  if (value === undefined || value === null) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

export function numberArg(text: string | undefined, flag: string): number {
  if (text === undefined) return 0;
  const n = parseDecimal(text);
  if (n === undefined || n < 0) throw invalid(`invalid ${flag} "${text}": expected a number >= 0`);
  return n;
}

export function bytesArg(text: string | undefined, flag: string): number {
  if (text === undefined) return 0;
  const n = parseBytes(text);
  if (n === undefined) throw invalid(`invalid ${flag} "${text}" (examples: 256M, 1.5G)`);
  return n;
}

export function parseBackoff(text: string | undefined): { backoffMs: number; backoffExponential: boolean } {
  if (text === undefined) return { backoffMs: 0, backoffExponential: false };
  const exp = text.startsWith('exp:');
  return { backoffMs: parseDurationMs(exp ? text.slice(4) : text), backoffExponential: exp };
}

export function parseConstraint(text: string): { key: string; op: string; value: string } {
  const m = /^([^=!]+)(!=|=)(.*)$/.exec(text);
  if (!m) throw invalid(`invalid --constraint "${text}": expected k=v or k!=v`);
  return { key: m[1], op: m[2], value: m[3] };
}

export function parseMount(text: string): { host: string; container: string; readOnly: boolean } {
  const parts = text.split(':');
  if (parts.length < 2 || parts.length > 3 || (parts[2] !== undefined && parts[2] !== 'ro' && parts[2] !== 'rw')) {
    throw invalid(`invalid --mount "${text}": expected /host/path:/container/path[:ro]`);
  }
  return { host: parts[0], container: parts[1], readOnly: parts[2] === 'ro' };
}
