/**
 * Encoding of stored records. Decoding checks each record against the key it
 * was read from, so a corrupt or misplaced value is reported, never trusted.
 */
import { LogTail, NodeInfo, Task, TaskState } from '../gen/loom';
import { LoomError } from '../core/errors';

export function encodeTask(task: Task): Buffer {
  return Buffer.from(Task.encode(task).finish());
}

export function decodeTask(value: Uint8Array, expectedId?: string): Task {
  let task: Task;
  try {
    task = Task.decode(value);
  } catch (err) {
    throw new LoomError('INTERNAL', `corrupt task record: ${(err as Error).message}`, expectedId);
  }
  if (expectedId !== undefined && task.id !== expectedId) {
    throw new LoomError('INTERNAL', `task record under ${expectedId} holds id "${task.id}"`, expectedId);
  }
  if (!task.spec || (task.spec.command.length === 0 && !task.spec.http?.url)) {
    throw new LoomError('INTERNAL', 'task record has no command and no HTTP request', task.id);
  }
  if (!(task.state >= TaskState.QUEUED && task.state <= TaskState.LOST)) {
    throw new LoomError('INTERNAL', `task record has unknown state ${task.state}`, task.id);
  }
  return task;
}

export function encodeNode(info: NodeInfo): Buffer {
  return Buffer.from(NodeInfo.encode(info).finish());
}

export function decodeNode(value: Uint8Array, expectedName?: string): NodeInfo {
  let info: NodeInfo;
  try {
    info = NodeInfo.decode(value);
  } catch (err) {
    throw new LoomError('INTERNAL', `corrupt node record: ${(err as Error).message}`, expectedName);
  }
  if (expectedName !== undefined && info.name !== expectedName) {
    throw new LoomError('INTERNAL', `node record under ${expectedName} holds "${info.name}"`);
  }
  return info;
}

export function encodeTail(tail: LogTail): Buffer {
  return Buffer.from(LogTail.encode(tail).finish());
}

export function decodeTail(value: Uint8Array): LogTail {
  try {
    return LogTail.decode(value);
  } catch (err) {
    throw new LoomError('INTERNAL', `corrupt log tail: ${(err as Error).message}`);
  }
}
