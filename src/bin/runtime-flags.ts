/**
 * V8 flags every project launcher passes to a node daemon (`node FLAGS
 * dist/src/bin/loom.js node ...`; also the `loom` executable's shebang and
 * the Dockerfile). They cannot be set from inside the process: V8 sizes its
 * heap at start-up.
 *
 * --max-semi-space-size=2: a node decodes bursts (a 2,000-task submit, 100,000
 * queued-key watch events) whose garbage is short-lived, but with the default
 * young generation (16 MiB semi-spaces) V8 grows the heap during the burst
 * and keeps it. Measured with `npm run bench -- --only scale` on a 2-core
 * machine, 100,000 queued: largest node RSS 132.5 MB with the flag against
 * 192.4 MB without, drain rate unchanged (31.7 vs 30.5 tasks/s).
 */
export const NODE_RUNTIME_FLAGS: readonly string[] = ['--max-semi-space-size=2'];
