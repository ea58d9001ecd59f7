/** A job's record is one etcd write: a spec too large for etcd's request limit is refused at submit, naming the limit. */
import { MAX_JOB_SPEC_BYTES, validateJobSpec } from '../../src/node/job-api';
import { validateSpec } from '../../src/core/spec';
import { thrownBy } from '../support/errors';

const template = validateSpec({ command: ['true'] });
const big = (i: number) => validateSpec({ command: ['true'], env: { PAD: `${i}`.padEnd(120 * 1024, 'x') } });

test('a job spec over the limit is INVALID_ARGUMENT naming it; one under it passes', () => {
  const over = { name: 'j', owner: '', template, count: 10, overrides: { 0: big(0), 1: big(1), 2: big(2), 3: big(3), 4: big(4) }, after: [], afterAny: [], labels: {} };
  const err = thrownBy(() => validateJobSpec(over, 'me'));
  expect(err.code).toBe('INVALID_ARGUMENT');
  expect(err.message).toMatch(new RegExp(`job spec is \\d+ bytes > limit ${MAX_JOB_SPEC_BYTES}`));
  const under = { ...over, overrides: { 0: big(0), 1: big(1), 2: big(2) } };
  expect(validateJobSpec(under, 'me').overrides[2].env.PAD.length).toBe(120 * 1024);
});
