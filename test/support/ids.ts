/** Test ids. */

/** A UUIDv7-shaped id minted at `ms` (ms since the epoch), made unique by `n`. */
export function uuidAt(ms: number, n: number): string {
  const h = ms.toString(16).padStart(12, '0');
  return `${h.slice(0, 8)}-${h.slice(8)}-7000-8000-${n.toString(16).padStart(12, '0')}`;
}
