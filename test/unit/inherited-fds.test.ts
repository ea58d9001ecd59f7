/**
 * A node closes the descriptors it inherited without close-on-exec, so tasks
 * started through Node's spawn do not inherit them (src/bin/inherited-fds.ts).
 * Real processes: a shell opens fd 40 (no close-on-exec, as a launcher's shell
 * leaves one) and execs node, which also has an IPC channel to this test.
 */
import { spawn } from 'child_process';
import * as path from 'path';

const MODULE = path.resolve(__dirname, '../../src/bin/inherited-fds.js');

it('closes inherited descriptors without close-on-exec and keeps stdio and the IPC channel', async () => {
  const script = `
    const { execFileSync } = require('child_process');
    const fds = () => execFileSync('sh', ['-c', 'ls /proc/$$/fd'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().split('\\n').filter(Boolean);
    const before = fds();
    const closed = require(${JSON.stringify(MODULE)}).closeInheritedDescriptors();
    const after = fds();
    process.send({ before, closed, after, ipc: process.channel.fd }, () => process.exit(0));
  `;
  const got = await new Promise<{ before: string[]; closed: number[]; after: string[]; ipc: number }>((resolve, reject) => {
    const p = spawn('bash', ['-c', 'exec 40</dev/null; exec "$0" -e "$1"', process.execPath, script], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    let err = '';
    p.stderr!.on('data', (d) => (err += d));
    p.once('message', (m) => resolve(m as never));
    p.once('exit', (code) => code !== 0 && reject(new Error(`child exited ${code}: ${err}`)));
  });
  // Before: a process the node starts sees the shell's descriptor.
  expect(got.before).toContain('40');
  expect(got.closed).toContain(40);
  expect(got.closed).not.toContain(got.ipc);
  expect(got.after).not.toContain('40');
  expect(got.after).toEqual(expect.arrayContaining(['0', '1', '2']));
});
