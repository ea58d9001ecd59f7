/** The container policy rules (pure): what is refused everywhere, per node, and who a container runs as. */
import {
  alwaysRefusedMount, containerRefusal, effectiveUser, EMPTY_POLICY, mountRefusal, NOBODY, parseAllowMount, submitRefusal,
} from '../../src/core/container-policy';
import { parseNodeArgs } from '../../src/bin/node-command';
import { validateSpec } from '../../src/core/spec';
import { ContainerPolicy, ContainerSpec } from '../../src/gen/loom';
import { thrownBy } from '../support/errors';

const policy = (over: Partial<ContainerPolicy> = {}): ContainerPolicy => ({ ...EMPTY_POLICY, refusedPaths: ['/var/lib/loom'], ...over });
const box = (over: Partial<ContainerSpec> = {}): ContainerSpec => ({ image: 'img', pull: 'never', mounts: [], network: '', user: '', ...over });

describe('mounts', () => {
  test('refused everywhere: "/", anything holding a Docker socket, paths that are not what they seem', () => {
    for (const host of ['/', '/var', '/var/run', '/run', '/run/docker.sock', '/var/run/docker.sock', '/srv/../', '/srv/./x', '/srv//x', '/srv/', '/a:b', 'rel', '/x\n']) {
      expect([host, alwaysRefusedMount(host)]).toEqual([host, expect.any(String)]);
    }
    for (const host of ['/srv', '/srv/data', '/tmp/x', '/runner', '/variable']) expect(alwaysRefusedMount(host)).toBeUndefined();
  });

  test('per node: under an allowed path, read-only where it says so, never overlapping the data dir', () => {
    const p = policy({ allowedMounts: [{ path: '/srv/data', readOnly: false }, { path: '/srv/ref', readOnly: true }, { path: '/var/lib', readOnly: false }] });
    expect(mountRefusal('/srv/data', false, p)).toBeUndefined();
    expect(mountRefusal('/srv/data/x/y', false, p)).toBeUndefined();
    expect(mountRefusal('/srv/database', true, p)).toMatch(/not under an --allow-mount path/);
    expect(mountRefusal('/srv', true, p)).toMatch(/not under an --allow-mount path/);
    expect(mountRefusal('/srv/ref/a', true, p)).toBeUndefined();
    expect(mountRefusal('/srv/ref/a', false, p)).toMatch(/read-only/);
    expect(mountRefusal('/var/lib', true, p)).toMatch(/would expose \/var\/lib\/loom/);
    expect(mountRefusal('/var/lib/loom/logs', true, p)).toMatch(/would expose \/var\/lib\/loom/);
    expect(mountRefusal('/srv/data', true, EMPTY_POLICY)).toMatch(/not under an --allow-mount path/);
  });

  test('--allow-mount refuses what is refused everywhere', () => {
    expect(parseAllowMount('/srv/data:ro')).toEqual({ path: '/srv/data', readOnly: true });
    expect(parseAllowMount('/')).toMatch(/invalid --allow-mount "\/": .*never mounted/);
    expect(parseAllowMount('/var/run')).toMatch(/Docker socket/);
    expect(thrownBy(() => parseNodeArgs(['--allow-mount', '/'], {})).code).toBe('INVALID_ARGUMENT');
    expect(parseNodeArgs(['--allow-mount', '/srv/a', '--allow-mount', '/srv/b:ro'], {}).allowMounts).toEqual([
      { path: '/srv/a', readOnly: false }, { path: '/srv/b', readOnly: true },
    ]);
  });
});

describe('users', () => {
  test('the spec is checked at submit: numeric UID[:GID] only', () => {
    const withUser = (user: string) => validateSpec({ command: ['id'], container: box({ user }) });
    expect(withUser('1000:1000').container?.user).toBe('1000:1000');
    for (const user of ['root', 'alice', '1000:', ':1', '-1', '99999999999']) {
      expect(thrownBy(() => withUser(user)).message).toMatch(/invalid user/);
    }
  });

  test('who a container runs as', () => {
    expect(effectiveUser('', '', false)).toEqual({ user: NOBODY });
    expect(effectiveUser('', 'root', false)).toEqual({ user: NOBODY });
    expect(effectiveUser('', '0:0', false)).toEqual({ user: NOBODY });
    // A name means what the image's /etc/passwd says, and the submitter chose the image.
    expect(effectiveUser('', 'app', false)).toEqual({ user: NOBODY });
    expect(effectiveUser('', '1000:1000', false)).toEqual({ user: '1000:1000' });
    expect(effectiveUser('1234', 'root', false)).toEqual({ user: '1234' });
    expect(effectiveUser('0', '', false)).toEqual({ refused: expect.stringMatching(/--allow-container-root/) });
    expect(effectiveUser('0', '', true)).toEqual({ user: '0' });
    expect(effectiveUser('', 'app', true)).toEqual({ user: 'app' });
  });
});

describe('placement and submit', () => {
  test('host networks: an admin\'s task, or a node that allows them to anyone', () => {
    expect(containerRefusal(box({ network: 'host' }), policy(), false)).toMatch(/needs an admin/);
    expect(containerRefusal(box({ network: 'container:x' }), policy(), false)).toMatch(/needs an admin/);
    expect(containerRefusal(box({ network: 'host' }), policy(), true)).toBeUndefined();
    expect(containerRefusal(box({ network: 'host' }), policy({ hostNetwork: true }), false)).toBeUndefined();
    expect(containerRefusal(box({ network: 'bridge' }), undefined, false)).toBeUndefined();
  });

  test('submit: bad input, then identity, then no node allowing it', () => {
    const nodes = [{ name: 'n1', containerPolicy: policy() }, { name: 'n2', containerPolicy: policy({ allowedMounts: [{ path: '/srv', readOnly: true }] }) }];
    const mount = (host: string, readOnly = true) => box({ mounts: [{ host, container: '/m', readOnly }] });
    expect(submitRefusal(mount('/var/lib/loom'), nodes, true, 'x')?.code).toBe('INVALID_ARGUMENT');
    expect(submitRefusal(box({ network: 'host' }), nodes, false, 'bob')?.message).toMatch(/^bob may not use network host/);
    expect(submitRefusal(box({ network: 'host' }), nodes, true, 'ops')).toBeUndefined();
    expect(submitRefusal(mount('/srv/x'), nodes, false, 'bob')).toBeUndefined();
    const denied = submitRefusal(mount('/srv/x', false), nodes, false, 'bob');
    expect(denied?.code).toBe('PERMISSION_DENIED');
    expect(denied?.message).toMatch(/^no live node allows this container \(n1: mount refused: .*; n2: mount refused: .*read-only/);
    expect(submitRefusal(box({ user: '0' }), nodes, true, 'ops')?.message).toMatch(/--allow-container-root/);
    expect(submitRefusal(box(), [], false, 'bob')).toBeUndefined(); // nothing asked of a policy: no nodes needed
  });
});
