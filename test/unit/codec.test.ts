import { v7 as uuidv7 } from 'uuid';
import { NodeInfo, Task, TaskState } from '../../src/gen/loom';
import { decodeTask, encodeTask, decodeNode, encodeNode } from '../../src/store/codec';
import { LoomError } from '../../src/core/errors';

function record(id = uuidv7()): Task {
  return Task.fromPartial({ id, spec: { command: ['ls', '-l'], env: { A: '1' }, priority: 100 }, state: TaskState.QUEUED, submittedAtMs: 1 });
}

describe('codec', () => {
  it('round-trips a task record', () => {
    const t = record();
    expect(decodeTask(encodeTask(t), t.id)).toEqual(t);
  });

  it('rejects garbage with a LoomError', () => {
    expect(() => decodeTask(Buffer.from([0xff, 0xff, 0xff, 0xff]))).toThrow(LoomError);
  });

  it('rejects a record stored under another id', () => {
    const t = record();
    expect(() => decodeTask(encodeTask(t), uuidv7())).toThrow(/holds id/);
  });

  it('rejects a record with no command or an unknown state', () => {
    const t = record();
    expect(() => decodeTask(encodeTask({ ...t, spec: { ...t.spec!, command: [] } }))).toThrow(/no command/);
    expect(() => decodeTask(encodeTask({ ...t, state: 42 as TaskState }))).toThrow(/unknown state/);
  });

  it('round-trips node info and checks its name', () => {
    const n = NodeInfo.fromPartial({ name: 'n1', address: '127.0.0.1:8080', slots: 2, startedAtMs: 5, version: 'x', pid: 1 });
    expect(decodeNode(encodeNode(n), 'n1')).toEqual(n);
    expect(() => decodeNode(encodeNode(n), 'n2')).toThrow(LoomError);
  });
});
