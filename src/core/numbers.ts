/** Numbers typed by a user (flags, CLI options): one rule for every command. */

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/**
 * A decimal number as typed ("12", "-1.5", "2e3", surrounding blanks
 * ignored), or undefined. Refuses what Number() alone would let through:
 * "" and blanks (0), hex/octal/binary ("0x10"), "Infinity".
 */
export function parseDecimal(text: string): number | undefined {
  const t = text.trim();
  if (!DECIMAL.test(t)) return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}
