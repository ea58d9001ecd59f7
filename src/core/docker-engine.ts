/**
 * Which Docker engine a node talks to, resolved as the docker CLI does, so a
 * machine set up for `docker` works for loom without another setting:
 *
 *   1. --docker-socket (loom's flag)
 *   2. LOOM_DOCKER_SOCK (loom's own variable, before Docker's)
 *   3. DOCKER_HOST: unix:///path, or tcp://host[:port] with TLS when
 *      DOCKER_TLS_VERIFY (verify the engine's certificate) or DOCKER_TLS
 *      (encrypt without verifying) is set, certificates from DOCKER_CERT_PATH
 *      (default ~/.docker: ca.pem, cert.pem, key.pem)
 *   4. /var/run/docker.sock
 *
 * Like the docker CLI, an empty variable counts as unset. Pure: the caller
 * (src/bin) passes the environment in.
 */
import * as path from 'path';
import { LoomError } from './errors';

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';
/** dockerd's conventional ports: plain and TLS. */
const DOCKER_HTTP_PORT = 2375;
const DOCKER_TLS_PORT = 2376;

export interface DockerTls {
  /** Directory holding ca.pem, cert.pem and key.pem. */
  certDir: string;
  /** Check the engine's certificate against ca.pem (DOCKER_TLS_VERIFY); false: encrypt only. */
  verify: boolean;
}

export type DockerEngine =
  | { kind: 'unix'; socketPath: string; source: string }
  | { kind: 'tcp'; host: string; port: number; tls?: DockerTls; source: string };

/** The variables resolveDockerEngine reads. */
export interface DockerEnv {
  LOOM_DOCKER_SOCK?: string;
  DOCKER_HOST?: string;
  DOCKER_TLS_VERIFY?: string;
  DOCKER_TLS?: string;
  DOCKER_CERT_PATH?: string;
  HOME?: string;
}

/** "unix:///run/docker.sock", "tcp://h:2376 (TLS)": for log lines and errors. */
export function describeDockerEngine(e: DockerEngine): string {
  if (e.kind === 'unix') return e.socketPath;
  const tls = e.tls ? (e.tls.verify ? ' (TLS, verified)' : ' (TLS, not verified)') : '';
  return `tcp://${e.host}:${e.port}${tls}`;
}

function set(v: string | undefined): v is string {
  return v !== undefined && v !== '';
}

export function resolveDockerEngine(flag: string | undefined, env: DockerEnv): DockerEngine {
  if (set(flag)) return parseDockerAddress(flag, '--docker-socket', env);
  if (set(env.LOOM_DOCKER_SOCK)) return parseDockerAddress(env.LOOM_DOCKER_SOCK, 'LOOM_DOCKER_SOCK', env);
  if (set(env.DOCKER_HOST)) return parseDockerAddress(env.DOCKER_HOST, 'DOCKER_HOST', env);
  return { kind: 'unix', socketPath: DEFAULT_DOCKER_SOCKET, source: 'default' };
}

/**
 * A socket path, unix:///path or tcp://host[:port], as `source` gave it. A bare
 * path is accepted everywhere (it is what --docker-socket always took).
 */
export function parseDockerAddress(text: string, source: string, env: DockerEnv): DockerEngine {
  const bad = (why: string) =>
    new LoomError('INVALID_ARGUMENT', `${source}="${text}": ${why} (expected unix:///path/to/docker.sock, a socket path, or tcp://host:port)`);
  if (!text.includes('://')) {
    if (!path.isAbsolute(text)) throw bad('a socket path must be absolute');
    return { kind: 'unix', socketPath: text, source };
  }
  const scheme = text.slice(0, text.indexOf('://')).toLowerCase();
  if (scheme === 'unix') {
    const socketPath = text.slice('unix://'.length);
    if (!path.isAbsolute(socketPath)) throw bad('the socket path must be absolute');
    return { kind: 'unix', socketPath, source };
  }
  if (scheme !== 'tcp') throw bad(`loom does not speak to Docker over ${scheme}://`);
  let url: URL;
  try {
    url = new URL(`http://${text.slice('tcp://'.length)}`);
  } catch {
    throw bad('not a valid host:port');
  }
  if (!url.hostname || (url.pathname !== '/' && url.pathname !== '') || url.search || url.username) throw bad('not a valid host:port');
  const verify = set(env.DOCKER_TLS_VERIFY);
  const tls: DockerTls | undefined = verify || set(env.DOCKER_TLS)
    ? { certDir: set(env.DOCKER_CERT_PATH) ? env.DOCKER_CERT_PATH : path.join(env.HOME ?? '', '.docker'), verify }
    : undefined;
  const port = url.port ? Number(url.port) : tls ? DOCKER_TLS_PORT : DOCKER_HTTP_PORT;
  // URL keeps IPv6 brackets; the HTTP agent wants the bare address.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return { kind: 'tcp', host, port, ...(tls ? { tls } : {}), source };
}
