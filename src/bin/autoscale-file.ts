/** Reads `--autoscale FILE` (YAML or JSON) into a checked policy (core/autoscale.ts). */
import * as fs from 'fs';
import { parse as parseYaml } from 'yaml';
import { AutoscalePolicy, parseAutoscalePolicy } from '../core/autoscale';
import { parseDockerAddress } from '../core/docker-engine';
import { invalid, LoomError } from '../core/errors';

/** `env`: the node's own environment, which exec commands start from and the kubernetes provider reads (KUBERNETES_SERVICE_*). */
export function readAutoscalePolicy(file: string, env: Record<string, string | undefined>): AutoscalePolicy {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new LoomError('INVALID_ARGUMENT', `--autoscale ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw invalid(`--autoscale ${file}: not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  try {
    const policy = parseAutoscalePolicy(doc);
    if (policy.provider.kind === 'docker' && policy.provider.engine) parseDockerAddress(policy.provider.engine, 'provider.engine', {});
    return policy.provider.kind === 'docker' ? policy : { ...policy, provider: { ...policy.provider, env } };
  } catch (err) {
    throw invalid(`--autoscale ${file}: ${(err as Error).message}`);
  }
}
