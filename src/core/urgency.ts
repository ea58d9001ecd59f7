/**
 * Who may submit urgent priorities (pure). Urgent tasks take slots kept free
 * for them (--urgent-slots) and sort ahead of everyone's work, so an
 * identity that could mark all its tasks urgent would jump every queue and
 * hold every urgent slot: priorities from --urgent-priority up are for
 * admins (--admin, node certificates; everyone without TLS) and the
 * identities named by --urgent-submitter.
 */
import { LoomError } from './errors';

export interface UrgencyPolicy {
  /** --urgent-priority: the lowest priority that counts as urgent. */
  urgentPriority: number;
  /** --urgent-submitter: identities besides the admins that may submit urgent tasks. */
  submitters: ReadonlySet<string>;
}

/**
 * PERMISSION_DENIED for the first spec at an urgent priority that `who` may
 * not submit (named by its index when there are several); undefined when
 * all may go.
 */
export function urgentRefusal(
  priorities: readonly number[],
  who: { name: string; admin: boolean },
  policy: UrgencyPolicy,
): LoomError | undefined {
  if (who.admin || policy.submitters.has(who.name)) return undefined;
  const i = priorities.findIndex((p) => p >= policy.urgentPriority);
  if (i < 0) return undefined;
  const which = priorities.length > 1 ? `task ${i}: ` : '';
  return new LoomError(
    'PERMISSION_DENIED',
    `${which}${who.name} may not submit priority ${priorities[i]}: priorities from ${policy.urgentPriority} (--urgent-priority) are urgent, ` +
      `for admins (--admin) and identities the node names with --urgent-submitter only; use a priority below ${policy.urgentPriority}`,
  );
}
