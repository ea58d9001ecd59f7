/**
 * Which Docker engine a node uses: the docker CLI's order (flag, then
 * LOOM_DOCKER_SOCK, then DOCKER_HOST with its TLS variables, then
 * /var/run/docker.sock), and `loom node`'s wiring of the environment into it.
 */
import { parseNodeArgs } from '../../src/bin/node-command';
import { describeDockerEngine, resolveDockerEngine } from '../../src/core/docker-engine';
import { LoomError } from '../../src/core/errors';

const failure = (fn: () => unknown): LoomError => {
  try {
    fn();
  } catch (e) {
    return e as LoomError;
  }
  throw new Error('expected an error');
};

describe('resolveDockerEngine', () => {
  it('takes the flag first, then LOOM_DOCKER_SOCK, then DOCKER_HOST, then the default socket', () => {
    const env = { LOOM_DOCKER_SOCK: '/loom.sock', DOCKER_HOST: 'unix:///docker-host.sock' };
    expect(resolveDockerEngine('/flag.sock', env)).toEqual({ kind: 'unix', socketPath: '/flag.sock', source: '--docker-socket' });
    expect(resolveDockerEngine(undefined, env)).toEqual({ kind: 'unix', socketPath: '/loom.sock', source: 'LOOM_DOCKER_SOCK' });
    expect(resolveDockerEngine(undefined, { DOCKER_HOST: 'unix:///path/d.sock' })).toEqual({ kind: 'unix', socketPath: '/path/d.sock', source: 'DOCKER_HOST' });
    expect(resolveDockerEngine(undefined, {})).toEqual({ kind: 'unix', socketPath: '/var/run/docker.sock', source: 'default' });
  });

  it('counts an empty value as unset, as the docker CLI does', () => {
    expect(resolveDockerEngine('', { LOOM_DOCKER_SOCK: '', DOCKER_HOST: 'unix:///d.sock' }).source).toBe('DOCKER_HOST');
    expect(resolveDockerEngine(undefined, { DOCKER_HOST: '' }).source).toBe('default');
  });

  it('takes tcp:// with TLS from DOCKER_TLS_VERIFY / DOCKER_TLS and DOCKER_CERT_PATH (default ~/.docker)', () => {
    expect(resolveDockerEngine(undefined, { DOCKER_HOST: 'tcp://10.0.0.5:2375' })).toEqual({ kind: 'tcp', host: '10.0.0.5', port: 2375, source: 'DOCKER_HOST' });
    expect(resolveDockerEngine(undefined, { DOCKER_HOST: 'tcp://docker.example', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: '/certs' })).toEqual({
      kind: 'tcp', host: 'docker.example', port: 2376, tls: { certDir: '/certs', verify: true }, source: 'DOCKER_HOST',
    });
    expect(resolveDockerEngine(undefined, { DOCKER_HOST: 'tcp://[::1]:2376', DOCKER_TLS: '1', HOME: '/home/u' })).toEqual({
      kind: 'tcp', host: '::1', port: 2376, tls: { certDir: '/home/u/.docker', verify: false }, source: 'DOCKER_HOST',
    });
    // The flag may name a TCP engine too (docker -H does); TLS still comes from the variables.
    expect(resolveDockerEngine('tcp://127.0.0.1:9999', {})).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9999, source: '--docker-socket' });
    expect(describeDockerEngine(resolveDockerEngine(undefined, { DOCKER_HOST: 'tcp://h', DOCKER_TLS_VERIFY: '1' }))).toBe('tcp://h:2376 (TLS, verified)');
  });

  it('refuses what it cannot speak to with INVALID_ARGUMENT naming the source', () => {
    for (const [flag, env, source] of [
      [undefined, { DOCKER_HOST: 'ssh://me@host' }, 'DOCKER_HOST'],
      [undefined, { DOCKER_HOST: 'npipe:////./pipe/docker_engine' }, 'DOCKER_HOST'],
      [undefined, { LOOM_DOCKER_SOCK: 'docker.sock' }, 'LOOM_DOCKER_SOCK'],
      ['unix://relative.sock', {}, '--docker-socket'],
      [undefined, { DOCKER_HOST: 'tcp://host:2375/path' }, 'DOCKER_HOST'],
      [undefined, { DOCKER_HOST: 'tcp://' }, 'DOCKER_HOST'],
    ] as const) {
      const e = failure(() => resolveDockerEngine(flag, env));
      expect(e).toBeInstanceOf(LoomError);
      expect(e.code).toBe('INVALID_ARGUMENT');
      expect(e.message).toContain(`${source}=`);
    }
  });
});

describe('loom node --docker-socket and the environment', () => {
  it('uses DOCKER_HOST when neither the flag nor LOOM_DOCKER_SOCK is given', () => {
    expect(parseNodeArgs([], { DOCKER_HOST: 'unix:///path/d.sock' }).docker).toEqual({ kind: 'unix', socketPath: '/path/d.sock', source: 'DOCKER_HOST' });
    expect(parseNodeArgs(['--docker-socket', '/flag.sock'], { DOCKER_HOST: 'unix:///path/d.sock', LOOM_DOCKER_SOCK: '/loom.sock' }).docker.source).toBe('--docker-socket');
    expect(parseNodeArgs([], {}).docker).toEqual({ kind: 'unix', socketPath: '/var/run/docker.sock', source: 'default' });
    expect(failure(() => parseNodeArgs([], { DOCKER_HOST: 'ssh://me@host' })).code).toBe('INVALID_ARGUMENT');
  });
});
