/**
 * The LoomError a call fails with, for tests that look at its code and
 * message; the test fails if the call succeeds or throws something else.
 */
import { LoomError } from '../../src/core/errors';

/** The LoomError `fn` throws. */
export function thrownBy(fn: () => unknown): LoomError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(LoomError);
    return err as LoomError;
  }
  throw new Error('expected a LoomError, got success');
}

/** The LoomError `p` rejects with. */
export async function rejectionOf(p: Promise<unknown>): Promise<LoomError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(LoomError);
    return err as LoomError;
  }
  throw new Error('expected a rejection with a LoomError, got success');
}
