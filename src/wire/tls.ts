/**
 * The client side of loom's mutual TLS: reading a PEM identity (cluster CA,
 * certificate, key), and the gRPC channel credentials every caller of a node
 * uses (the CLI, and nodes themselves for node-to-node calls).
 *
 * A node's certificate carries OU=node in its subject (see
 * src/bin/certs-command.ts); a client's OU=client. A channel only talks to a
 * server that proves to be a node of the cluster: signed by the CA, naming
 * the address dialled, and OU=node.
 *
 * The CLI reads LOOM_TLS_CA, LOOM_TLS_CERT and LOOM_TLS_KEY (src/bin/loom.ts
 * passes them to setDefaultClientTls); a LoomApi built without explicit TLS
 * options uses that default.
 */
import { X509Certificate, createPrivateKey } from 'crypto';
import { readFileSync } from 'fs';
import { checkServerIdentity as defaultCheckServerIdentity, type PeerCertificate } from 'tls';
import * as grpc from '@grpc/grpc-js';
import type { TlsFiles } from '../core/config';
import { invalid } from '../core/errors';

export type { TlsFiles } from '../core/config';

/** Subject OU that marks a node certificate / a client certificate. */
export const NODE_OU = 'node';
export const CLIENT_OU = 'client';

export type CertRole = 'node' | 'client';

/** A loaded identity: the PEM bytes plus where they came from (for messages). */
export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  files: TlsFiles;
  /** CN of the certificate. */
  name: string;
  role: CertRole | undefined;
  notAfter: Date;
}

export const TLS_ENV = { ca: 'LOOM_TLS_CA', cert: 'LOOM_TLS_CERT', key: 'LOOM_TLS_KEY' } as const;

/** LOOM_TLS_CA/CERT/KEY: all three, or none (undefined). */
export function tlsFilesFromEnv(env: NodeJS.ProcessEnv): TlsFiles | undefined {
  const caFile = env[TLS_ENV.ca] ?? '';
  const certFile = env[TLS_ENV.cert] ?? '';
  const keyFile = env[TLS_ENV.key] ?? '';
  if (!caFile && !certFile && !keyFile) return undefined;
  const missing = [
    [TLS_ENV.ca, caFile],
    [TLS_ENV.cert, certFile],
    [TLS_ENV.key, keyFile],
  ].filter(([, v]) => !v).map(([k]) => k);
  if (missing.length > 0) {
    throw invalid(`${missing.join(' and ')} not set: mutual TLS needs ${TLS_ENV.ca}, ${TLS_ENV.cert} and ${TLS_ENV.key} together`);
  }
  return { caFile, certFile, keyFile };
}

/** First value of a subject field (tls.PeerCertificate gives string or string[]). */
function field(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** Parses an X509Certificate#subject ("O=loom\nOU=node\nCN=node1"). */
export function subjectFields(subject: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of subject.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0 && !(line.slice(0, at) in out)) out[line.slice(0, at)] = line.slice(at + 1);
  }
  return out;
}

export function roleOf(ou: string | undefined): CertRole | undefined {
  return ou === NODE_OU ? 'node' : ou === CLIENT_OU ? 'client' : undefined;
}

function readPem(file: string, what: string, flag: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (err) {
    throw invalid(`${flag}: cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!data.includes('-----BEGIN ')) throw invalid(`${flag}: ${file} is not a PEM file (expected ${what})`);
  return data;
}

/**
 * Reads and checks an identity: the CA and the certificate parse, the key
 * belongs to the certificate, and the certificate is signed by the CA.
 * `flags` names the options/variables in messages. Throws INVALID_ARGUMENT.
 */
export function readTlsFiles(files: TlsFiles, flags: { ca: string; cert: string; key: string } = TLS_ENV): TlsMaterial {
  const ca = readPem(files.caFile, 'the cluster CA certificate', flags.ca);
  const cert = readPem(files.certFile, 'a certificate', flags.cert);
  const key = readPem(files.keyFile, 'a private key', flags.key);
  let caCert: X509Certificate;
  let own: X509Certificate;
  try {
    caCert = new X509Certificate(ca);
  } catch (err) {
    throw invalid(`${flags.ca}: ${files.caFile} is not a valid certificate: ${(err as Error).message}`);
  }
  try {
    own = new X509Certificate(cert);
  } catch (err) {
    throw invalid(`${flags.cert}: ${files.certFile} is not a valid certificate: ${(err as Error).message}`);
  }
  let matches = false;
  try {
    matches = own.checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw invalid(`${flags.key}: ${files.keyFile} is not a valid private key: ${(err as Error).message}`);
  }
  if (!matches) throw invalid(`${flags.key}: ${files.keyFile} is not the key of ${files.certFile}`);
  if (!own.checkIssued(caCert) || !own.verify(caCert.publicKey)) {
    throw invalid(`${flags.cert}: ${files.certFile} is not signed by the CA in ${files.caFile} (${caCert.subject.replace(/\n/g, ', ')})`);
  }
  const subject = subjectFields(own.subject);
  return {
    ca,
    cert,
    key,
    files,
    name: subject.CN ?? '',
    role: roleOf(subject.OU),
    notAfter: new Date(own.validTo),
  };
}

/**
 * Server check of every loom channel: the usual hostname check, then the
 * server must hold a node certificate (a client certificate set up as a
 * server is refused).
 */
export function checkNodeServer(hostname: string, cert: PeerCertificate): Error | undefined {
  const hostError = defaultCheckServerIdentity(hostname, cert);
  if (hostError) return hostError;
  const role = roleOf(field(cert.subject?.OU));
  if (role !== 'node') {
    const cn = field(cert.subject?.CN) ?? '?';
    return new Error(`the server at ${hostname} presented ${role === 'client' ? 'a client' : 'a non-loom'} certificate (CN=${cn}), not a loom node certificate`);
  }
  return undefined;
}

/** gRPC channel credentials for talking to loom nodes with this identity. */
export function channelCredentials(m: TlsMaterial): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(m.ca, m.key, m.cert, { checkServerIdentity: checkNodeServer });
}

let defaultTls: TlsFiles | undefined;
let defaultLoaded: TlsMaterial | undefined;

/** Sets the identity LoomApi uses when none is given (the CLI: LOOM_TLS_*). */
export function setDefaultClientTls(files: TlsFiles | undefined): void {
  defaultTls = files;
  defaultLoaded = undefined;
}

/** The default identity, read on first use (so a bad file fails the command that needs it). */
export function defaultClientTls(): TlsMaterial | undefined {
  if (!defaultTls) return undefined;
  defaultLoaded ??= readTlsFiles(defaultTls);
  return defaultLoaded;
}
