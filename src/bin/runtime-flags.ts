/**
 * V8 flags every project launcher passes to a node daemon (`node FLAGS
 * dist/src/bin/loom.js node ...`; also the `loom` executable's shebang and
 * the Dockerfile). They cannot be set from inside the process: V8 sizes its
 * heap at start-up.
 *
 * --max-semi-space-size=2: a node decodes bursts (a 2,000-task submit, 100,000
 * queued-key watch events) whose garbage is short-lived, but with the default
 * young generation (16 MiB semi-spaces) V8 grows the heap during the burst
 * and keeps it; the live heap after a GC is a fraction of what stays
 * resident. `npm run bench -- --only scale` (100,000 queued) measures the
 * effect: run it with and without the flag (NODE_OPTIONS) to compare.
 */
export const NODE_RUNTIME_FLAGS: readonly string[] = ['--max-semi-space-size=2'];
