/**
 * `loom certs`: a cluster CA and the certificates of nodes and clients, made
 * with the system's openssl (run with execFile, never through a shell).
 *
 *   loom certs init  --dir DIR [--days 3650]             DIR/ca.crt, DIR/ca.key
 *   loom certs issue --dir DIR node NAME --host H ...    DIR/node-NAME.crt, .key
 *   loom certs issue --dir DIR client NAME               DIR/client-NAME.crt, .key
 *   loom certs issue --dir DIR client NAME --p12         also DIR/client-NAME.p12 (for a browser)
 *
 * Certificates (EC P-256, SHA-256):
 *  - CA: CN=loom-ca, O=loom; CA:TRUE, keyCertSign.
 *  - node: O=loom, OU=node, CN=NAME; serverAuth + clientAuth; SANs: DNS:NAME,
 *    DNS:loom-node (what etcd admits) and every --host (IPs and DNS names).
 *  - client: O=loom, OU=client, CN=NAME; clientAuth only. NAME is the identity
 *    recorded as the owner of the tasks it submits.
 *
 * --p12: the client's key and certificate with the CA, as one PKCS#12 bundle
 * a browser imports (the dashboard on a TLS node), protected by the password
 * in LOOM_P12_PASSWORD, or else a new random one written to
 * DIR/client-NAME.p12.pass (0600). OpenSSL 3's default encryption (AES-256,
 * PBKDF2): Chrome, Firefox and current macOS import it.
 *
 * Keys are written 0600, certificates 0644, each file atomically (written in a
 * private temporary directory inside DIR, then linked into place). An existing
 * file is never overwritten unless --force.
 */
import { execFile } from 'child_process';
import { randomBytes, X509Certificate } from 'crypto';
import * as fs from 'fs';
import { isIP } from 'net';
import * as path from 'path';
import yargs from 'yargs';
import { validateIdentityName, validateNodeName } from '../core/config';
import { invalid, LoomError, toLoomError } from '../core/errors';
import { ETCD_ALLOWED_HOSTNAME } from '../etcd/embedded';
import { numberFlag, strictFlags } from './flags';

export const CA_CERT = 'ca.crt';
export const CA_KEY = 'ca.key';
export const DEFAULT_CA_DAYS = 3650;
export const DEFAULT_DAYS = 365;

export type IssueRole = 'node' | 'client';

export interface InitOptions {
  dir: string;
  days?: number;
  force?: boolean;
}

export interface IssueOptions {
  dir: string;
  role: IssueRole;
  name: string;
  /** node only: addresses (IPs, DNS names) the node is reached at. */
  hosts?: string[];
  /** Validity in days from now. (Tests pass a negative number for an already expired certificate.) */
  days?: number;
  force?: boolean;
  /** client only: also a PKCS#12 bundle, with this password (undefined: a new random one, written beside it). */
  p12?: { password?: string };
}

export interface Issued {
  cert: string;
  key: string;
  notAfter: Date;
  /** With p12: the bundle, and the file holding its password when one was made up. */
  p12?: string;
  p12PasswordFile?: string;
}

/** Runs openssl; rejects with a one-line LoomError. */
function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 60_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', OPENSSL_CONF: '/dev/null' } }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return reject(new LoomError('UNAVAILABLE', 'openssl not found on PATH: install it (apt-get install -y openssl)'));
      }
      const why = String(stderr).trim().split('\n').filter(Boolean).slice(-2).join('; ') || err.message;
      reject(new LoomError('INTERNAL', `openssl ${args[0]} failed: ${why}`));
    });
  });
}

function serial(): string {
  const b = randomBytes(16);
  b[0] &= 0x7f; // positive
  return `0x${b.toString('hex')}`;
}

function checkDays(days: number, what: string): number {
  if (!Number.isInteger(days) || days === 0 || Math.abs(days) > 36500) {
    throw invalid(`${what} must be a whole number of days from 1 to 36500 (got ${days})`);
  }
  return days;
}

/** A private scratch directory inside dir (same filesystem: links are atomic). */
function scratch(dir: string): string {
  return fs.mkdtempSync(path.join(dir, '.loom-certs-'));
}

function refuseExisting(files: string[], force: boolean | undefined): void {
  if (force) return;
  const existing = files.filter((f) => fs.existsSync(f));
  if (existing.length > 0) {
    throw new LoomError('INVALID_STATE', `${existing.join(' and ')} already exist${existing.length === 1 ? 's' : ''}; pass --force to overwrite`);
  }
}

/** Puts tmp at dest (mode set first): rename with --force, else link (fails if dest appeared meanwhile). */
function install(tmp: string, dest: string, mode: number, force: boolean | undefined): void {
  fs.chmodSync(tmp, mode);
  if (force) {
    fs.renameSync(tmp, dest);
    return;
  }
  try {
    fs.linkSync(tmp, dest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new LoomError('INVALID_STATE', `${dest} already exists; pass --force to overwrite`);
    throw err;
  }
  fs.unlinkSync(tmp);
}

async function newKey(work: string, file: string): Promise<void> {
  // The scratch dir is 0700, so the key is never readable by others, even before the chmod.
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file], work);
  fs.chmodSync(path.join(work, file), 0o600);
}

function writeConfig(work: string, name: string, text: string): string {
  const file = path.join(work, name);
  fs.writeFileSync(file, text, { mode: 0o600 });
  return file;
}

function notAfterOf(certFile: string): Date {
  return new Date(new X509Certificate(fs.readFileSync(certFile)).validTo);
}

/** Creates DIR/ca.crt and DIR/ca.key. */
export async function initCa(opts: InitOptions): Promise<Issued> {
  const dir = path.resolve(opts.dir);
  const days = checkDays(opts.days ?? DEFAULT_CA_DAYS, '--days');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const cert = path.join(dir, CA_CERT);
  const key = path.join(dir, CA_KEY);
  refuseExisting([cert, key], opts.force);
  const work = scratch(dir);
  try {
    await newKey(work, 'ca.key');
    writeConfig(
      work,
      'ca.cnf',
      [
        '[req]', 'distinguished_name = dn', 'prompt = no', 'x509_extensions = v3',
        '[dn]', 'O = loom', 'CN = loom-ca',
        '[v3]', 'basicConstraints = critical,CA:TRUE', 'keyUsage = critical,keyCertSign,cRLSign', 'subjectKeyIdentifier = hash',
        '',
      ].join('\n'),
    );
    await openssl(['req', '-x509', '-new', '-config', 'ca.cnf', '-key', 'ca.key', '-sha256', '-days', String(days), '-set_serial', serial(), '-out', 'ca.crt'], work);
    install(path.join(work, 'ca.key'), key, 0o600, opts.force);
    install(path.join(work, 'ca.crt'), cert, 0o644, opts.force);
    return { cert, key, notAfter: notAfterOf(cert) };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

const DNS_NAME = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/;

/** SAN entries for a node: its name, the etcd marker, and every --host. */
export function nodeSans(name: string, hosts: string[]): string[] {
  const out = [`DNS:${name}`, `DNS:${ETCD_ALLOWED_HOSTNAME}`];
  for (const raw of hosts.flatMap((h) => h.split(',')).map((h) => h.trim()).filter(Boolean)) {
    const host = raw.replace(/^\[(.*)\]$/, '$1');
    if (isIP(host)) out.push(`IP:${host}`);
    else if (DNS_NAME.test(host) && host.length <= 253) out.push(`DNS:${host}`);
    else throw invalid(`invalid --host "${raw.slice(0, 80)}": expected an IP address or a DNS name`);
  }
  return [...new Set(out)];
}

/** Issues DIR/<role>-NAME.crt and .key, signed by DIR/ca.crt. */
export async function issueCert(opts: IssueOptions): Promise<Issued> {
  const dir = path.resolve(opts.dir);
  const name = opts.role === 'node' ? validateNodeName(opts.name) : validateIdentityName(opts.name, 'client name');
  const days = checkDays(opts.days ?? DEFAULT_DAYS, '--days');
  if (opts.role === 'client' && (opts.hosts ?? []).length > 0) throw invalid('--host is for node certificates only');
  if (opts.role === 'node' && opts.p12) throw invalid('--p12 is for client certificates (a browser\'s identity)');
  if (opts.p12?.password !== undefined && opts.p12.password.length < 4) throw invalid('the PKCS#12 password (LOOM_P12_PASSWORD) must have at least 4 characters');
  const sans = opts.role === 'node' ? nodeSans(name, opts.hosts ?? []) : [];
  const caCert = path.join(dir, CA_CERT);
  const caKey = path.join(dir, CA_KEY);
  for (const f of [caCert, caKey]) {
    if (!fs.existsSync(f)) throw new LoomError('NOT_FOUND', `${f} not found: create the CA first with \`loom certs init --dir ${opts.dir}\``);
  }
  const cert = path.join(dir, `${opts.role}-${name}.crt`);
  const key = path.join(dir, `${opts.role}-${name}.key`);
  const p12 = opts.p12 ? path.join(dir, `${opts.role}-${name}.p12`) : undefined;
  const passFile = opts.p12 && opts.p12.password === undefined ? `${p12}.pass` : undefined;
  refuseExisting([cert, key, ...(p12 ? [p12] : []), ...(passFile ? [passFile] : [])], opts.force);
  const work = scratch(dir);
  try {
    await newKey(work, 'leaf.key');
    writeConfig(work, 'leaf.cnf', ['[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', 'O = loom', `OU = ${opts.role}`, `CN = ${name}`, ''].join('\n'));
    await openssl(['req', '-new', '-config', 'leaf.cnf', '-key', 'leaf.key', '-out', 'leaf.csr'], work);
    writeConfig(
      work,
      'leaf.ext',
      [
        '[v3]',
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature',
        `extendedKeyUsage = ${opts.role === 'node' ? 'serverAuth,clientAuth' : 'clientAuth'}`,
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid',
        ...(sans.length > 0 ? [`subjectAltName = ${sans.join(',')}`] : []),
        '',
      ].join('\n'),
    );
    await openssl(
      ['x509', '-req', '-in', 'leaf.csr', '-CA', caCert, '-CAkey', caKey, '-set_serial', serial(), '-sha256', '-days', String(days), '-extfile', 'leaf.ext', '-extensions', 'v3', '-out', 'leaf.crt'],
      work,
    );
    if (p12) {
      // The password goes to openssl in a 0600 file of the scratch dir, never on its command line.
      writeConfig(work, 'p12.pass', opts.p12!.password ?? randomBytes(12).toString('base64url'));
      await openssl(['pkcs12', '-export', '-in', 'leaf.crt', '-inkey', 'leaf.key', '-certfile', caCert, '-name', `loom ${name}`, '-passout', 'file:p12.pass', '-out', 'leaf.p12'], work);
      install(path.join(work, 'leaf.p12'), p12, 0o600, opts.force);
      if (passFile) install(path.join(work, 'p12.pass'), passFile, 0o600, opts.force);
    }
    install(path.join(work, 'leaf.key'), key, 0o600, opts.force);
    install(path.join(work, 'leaf.crt'), cert, 0o644, opts.force);
    return { cert, key, notAfter: notAfterOf(cert), ...(p12 ? { p12 } : {}), ...(passFile ? { p12PasswordFile: passFile } : {}) };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function list(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  try {
    let result: Promise<void> | undefined;
    strictFlags(yargs(argv))
      .scriptName('loom certs')
      .usage('$0 <command>\n\nA cluster CA and the certificates of its nodes and clients (uses openssl).')
      .command(
        'init',
        'create the cluster CA: DIR/ca.crt and DIR/ca.key',
        (y) =>
          y
            .option('dir', { type: 'string', demandOption: true, describe: 'directory for the CA (created 0700)' })
            .option('days', { requiresArg: true, default: DEFAULT_CA_DAYS, describe: 'validity in days' })
            .option('force', { type: 'boolean', default: false, describe: 'overwrite an existing CA' }),
        (a) => {
          result = initCa({ dir: a.dir, days: numberFlag(a.days, '--days'), force: a.force }).then((r) => {
            out(`wrote ${r.cert} and ${r.key} (valid until ${r.notAfter.toISOString()})\n`);
            out('keep ca.key secret: whoever has it can make certificates for this cluster\n');
          });
        },
      )
      .command(
        'issue <role> <name>',
        'issue a node or client certificate signed by DIR/ca.key',
        (y) =>
          y
            .positional('role', { choices: ['node', 'client'] as const, demandOption: true, describe: 'node (serves the API and runs etcd) or client (uses the CLI)' })
            .positional('name', { type: 'string', demandOption: true, describe: 'node name (its --name) or client identity' })
            .option('dir', { type: 'string', demandOption: true, describe: 'directory holding ca.crt and ca.key' })
            .option('host', { type: 'string', array: true, describe: 'node: address it is reached at, IP or DNS name (repeatable, or comma-separated)' })
            .option('days', { requiresArg: true, default: DEFAULT_DAYS, describe: 'validity in days' })
            .option('p12', { type: 'boolean', default: false, describe: 'client: also DIR/client-NAME.p12 for a browser (password: $LOOM_P12_PASSWORD, or a new one in DIR/client-NAME.p12.pass)' })
            .option('force', { type: 'boolean', default: false, describe: 'overwrite an existing certificate' }),
        (a) => {
          const role = a.role as IssueRole;
          const days = numberFlag(a.days, '--days');
          if (!Number.isInteger(days) || days < 1) throw invalid(`--days must be a whole number of days from 1 (got ${days})`);
          const p12 = a.p12 ? { password: process.env.LOOM_P12_PASSWORD || undefined } : undefined;
          result = issueCert({ dir: a.dir, role, name: a.name, hosts: list(a.host), days, force: a.force, p12 }).then((r) => {
            out(`wrote ${r.cert} and ${r.key} (valid until ${r.notAfter.toISOString()})\n`);
            if (r.p12) out(`wrote ${r.p12}: import it in the browser (password ${r.p12PasswordFile ? `in ${r.p12PasswordFile}` : 'from LOOM_P12_PASSWORD'})\n`);
            const ca = path.join(path.resolve(a.dir), CA_CERT);
            out(
              role === 'node'
                ? `use: loom node --name ${a.name} --tls-ca ${ca} --tls-cert ${r.cert} --tls-key ${r.key} ...\n`
                : `use: export LOOM_TLS_CA=${ca} LOOM_TLS_CERT=${r.cert} LOOM_TLS_KEY=${r.key}\n`,
            );
          });
        },
      )
      .demandCommand(1, 'give a command: init or issue')
      .parseSync();
    if (result) await result;
    return 0;
  } catch (err) {
    const e = toLoomError(err);
    process.stderr.write(`loom certs: ${e.message}\n`);
    return e.exitCode;
  }
}
