/**
 * What of a task's spec only its owner and admins may read: env values, and
 * an HTTP task's header values and request body (where tokens travel). Names
 * stay visible, so a user can still see what a task is; the values read
 * "(hidden)". The CA bundle is a public certificate and stays.
 */
import { TaskSpec } from '../gen/loom';

export const HIDDEN = '(hidden)';

export function secretsHidden(spec: TaskSpec): TaskSpec {
  const hasEnv = Object.keys(spec.env).length > 0;
  const http = spec.http;
  const hasHttpSecrets = !!http && (http.headers.length > 0 || http.body.length > 0);
  if (!hasEnv && !hasHttpSecrets) return spec;
  return {
    ...spec,
    env: hasEnv ? Object.fromEntries(Object.keys(spec.env).map((k) => [k, HIDDEN])) : spec.env,
    ...(http && hasHttpSecrets
      ? { http: { ...http, headers: http.headers.map((h) => ({ name: h.name, value: HIDDEN })), body: http.body.length > 0 ? Buffer.from(HIDDEN) : http.body } }
      : {}),
  };
}
