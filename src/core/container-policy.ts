/**
 * What a container task may ask of a node, pure. One set of rules serves
 * three places, so that they cannot disagree:
 *  - submit (api-server): always-refused specs are INVALID_ARGUMENT
 *    (validateSpec calls alwaysRefusedMount); a spec that no live node's
 *    published policy (NodeInfo.container_policy) allows is PERMISSION_DENIED;
 *  - placement (fit.ts refusal): a node never claims a task its own policy
 *    refuses, and explainUnplaceable says why it waits;
 *  - the run (docker-runner): the node checks again with symlinks resolved,
 *    right before the engine sees the mount.
 * A node without a published policy (an older node) allows nothing extra.
 */
import { posix } from 'path';
import { ContainerPolicy, ContainerSpec } from '../gen/loom';

export type { ContainerPolicy };
import { LoomError } from './errors';

/** Where Docker engines keep their API socket; mounting it (or a directory above it) is root on the host. */
export const DOCKER_SOCKETS: readonly string[] = ['/var/run/docker.sock', '/run/docker.sock'];

/** Kubernetes' "restricted" profile asks for some pids limit; this one is generous for builds and tests. */
export const DEFAULT_CONTAINER_PIDS = 4096;

/**
 * Who a container runs as when it would be root and the node does not allow
 * root: nobody/nogroup, which owns nothing on the host.
 */
export const NOBODY = '65534:65534';

export const EMPTY_POLICY: ContainerPolicy = { allowedMounts: [], hostNetwork: false, root: false, refusedPaths: [] };

const USER = /^(\d{1,10})(?::(\d{1,10}))?$/;

/** Is `child` `parent` or below it? */
export function isWithin(child: string, parent: string): boolean {
  return child === parent || parent === '/' || child.startsWith(`${parent}/`);
}

/** Does mounting `a` expose `b`, or the other way round? */
function overlaps(a: string, b: string): boolean {
  return isWithin(a, b) || isWithin(b, a);
}

/**
 * Why `host` can never be bind-mounted on any node, or undefined. Docker's
 * bind syntax splits on ':' and resolves '..', so only plain absolute
 * normalised paths are taken: what is checked is what gets mounted.
 */
export function alwaysRefusedMount(host: string): string | undefined {
  if (!host.startsWith('/')) return `host path ${JSON.stringify(host)} must be absolute`;
  if (host.includes(':') || host.includes(',') || /[\u0000-\u001f\u007f]/.test(host)) {
    return `host path ${JSON.stringify(host)} contains ':', ',' or a control character`;
  }
  if (posix.normalize(host) !== host || (host.length > 1 && host.endsWith('/'))) {
    return `host path ${JSON.stringify(host)} is not normalised (no ".", "..", "//" or trailing "/")`;
  }
  if (host === '/') return 'the host\'s root directory "/" is never mounted';
  for (const socket of DOCKER_SOCKETS) {
    if (overlaps(host, socket)) return `${host} would expose the Docker socket ${socket}, which is root on the host`;
  }
  return undefined;
}

/** network host / container:NAME share a namespace of the host or of another container. */
export function isHostNetwork(network: string): boolean {
  return network === 'host' || network.startsWith('container:');
}

/** Parses a spec's "UID[:GID]", or undefined if it is not one. */
export function parseUser(user: string): { uid: number; gid?: number } | undefined {
  const m = USER.exec(user);
  if (!m) return undefined;
  const uid = Number(m[1]);
  const gid = m[2] === undefined ? undefined : Number(m[2]);
  if (uid > 0xffffffff || (gid !== undefined && gid > 0xffffffff)) return undefined;
  return gid === undefined ? { uid } : { uid, gid };
}

/** Why `policy` refuses mounting `host` (read-only or not), or undefined. */
export function mountRefusal(host: string, readOnly: boolean, policy: ContainerPolicy): string | undefined {
  const always = alwaysRefusedMount(host);
  if (always) return always;
  for (const refused of policy.refusedPaths) {
    if (overlaps(host, refused)) return `${host} would expose ${refused} (the node's data dir or Docker socket)`;
  }
  const allowing = policy.allowedMounts.filter((a) => isWithin(host, a.path));
  if (allowing.length === 0) return `${host} is not under an --allow-mount path`;
  if (!readOnly && allowing.every((a) => a.readOnly)) return `${host} may only be mounted read-only (--allow-mount ...:ro)`;
  return undefined;
}

/**
 * Why a node with `policy` may not run `c`, or undefined. `byAdmin`: the
 * submitter was an admin where it submitted (Task.submitted_by_admin).
 */
export function containerRefusal(c: ContainerSpec, policy: ContainerPolicy | undefined, byAdmin: boolean): string | undefined {
  const p = policy ?? EMPTY_POLICY;
  for (const m of c.mounts) {
    const why = mountRefusal(m.host, m.readOnly, p);
    if (why) return `mount refused: ${why}`;
  }
  if (isHostNetwork(c.network) && !byAdmin && !p.hostNetwork) {
    return `network ${c.network} needs an admin (--admin) or a node started with --allow-host-network`;
  }
  if (c.user && parseUser(c.user)?.uid === 0 && !p.root) return 'user 0 (root) needs a node started with --allow-container-root';
  return undefined;
}

/** Does `c` ask for anything a policy decides (so the submit must look at the nodes' policies)? */
export function needsPolicy(c: ContainerSpec | undefined): boolean {
  if (!c?.image) return false;
  return c.mounts.length > 0 || isHostNetwork(c.network) || (c.user !== '' && parseUser(c.user)?.uid === 0);
}

/**
 * The user a container runs as: the spec's; else the image's when it is a
 * numeric uid other than 0. An image user given by name is not taken: what a
 * name means is up to the image's /etc/passwd, which the submitter controls
 * (it may well say uid 0). Without root allowed, such images run as NOBODY.
 * Returns a refusal when the spec itself asks for uid 0 and root is not allowed.
 */
export function effectiveUser(specUser: string, imageUser: string, allowRoot: boolean): { user: string } | { refused: string } {
  if (specUser) {
    const u = parseUser(specUser);
    if (!u) return { refused: `invalid user ${JSON.stringify(specUser)}: expected UID[:GID]` };
    if (u.uid === 0 && !allowRoot) return { refused: 'user 0 (root) needs a node started with --allow-container-root' };
    return { user: specUser };
  }
  if (allowRoot) return { user: imageUser };
  const u = parseUser(imageUser);
  if (u && u.uid !== 0) return { user: imageUser };
  return { user: NOBODY };
}

/** Parses a node's `--allow-mount PATH[:ro]`; throws nothing, returns an error message instead. */
export function parseAllowMount(text: string): { path: string; readOnly: boolean } | string {
  const readOnly = text.endsWith(':ro');
  const path = readOnly ? text.slice(0, -3) : text;
  const why = alwaysRefusedMount(path);
  if (why) return `invalid --allow-mount "${text.slice(0, 200)}": ${why}`;
  return { path, readOnly };
}

/**
 * The submit-time check of a validated spec against the policies the live
 * nodes publish: PERMISSION_DENIED when a host network is asked for by a
 * non-admin and no node allows it to anyone, or when no node's policy allows
 * the container at all (each node's reason is named). Always-refused mounts
 * never get here: validateSpec rejects them as INVALID_ARGUMENT.
 */
export function submitRefusal(
  c: ContainerSpec | undefined,
  nodes: { name: string; containerPolicy?: ContainerPolicy }[],
  byAdmin: boolean,
  who: string,
): LoomError | undefined {
  if (!c || !needsPolicy(c)) return undefined;
  // A node's data dir and engine socket are not just refused by that node:
  // they are never a mount source anywhere, so this is bad input, not policy.
  for (const m of c.mounts) {
    for (const n of nodes) {
      const hit = n.containerPolicy?.refusedPaths.find((p) => overlaps(m.host, p));
      if (hit) return new LoomError('INVALID_ARGUMENT', `invalid mount "${m.host}": it would expose ${hit}, node ${n.name}'s data dir or Docker socket, which are never mounted`);
    }
  }
  if (isHostNetwork(c.network) && !byAdmin && !nodes.some((n) => n.containerPolicy?.hostNetwork)) {
    return new LoomError(
      'PERMISSION_DENIED',
      `${who} may not use network ${c.network}: only an admin (see --admin) may, or anyone on a node started with --allow-host-network (no live node is)`,
    );
  }
  const reasons = nodes.map((n) => [n.name, containerRefusal(c, n.containerPolicy, byAdmin)] as const);
  if (reasons.some(([, why]) => why === undefined)) return undefined;
  const listed = reasons.slice(0, 3).map(([name, why]) => `${name}: ${why}`).join('; ');
  return new LoomError('PERMISSION_DENIED', `no live node allows this container${listed ? ` (${listed})` : ''}`);
}
