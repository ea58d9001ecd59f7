import * as path from 'path';
import { realpathSync } from 'fs';
import { ContainerPolicy } from '../gen/loom';
import { NodeConfig } from '../core/config';

/**
 * This node's rules for container tasks, published in its NodeInfo so that
 * any node's submit check and placement read the same rules this node's
 * runner applies. The data dir (other tasks' logs, the lease file, the etcd
 * member) and the engine's socket are refused as given and as resolved.
 */
export function containerPolicyOf(config: NodeConfig, dockerSocket: string | undefined): ContainerPolicy {
  const refused = new Set<string>();
  for (const p of [config.dataDir, ...(dockerSocket ? [dockerSocket] : [])]) {
    const abs = path.resolve(p);
    refused.add(abs);
    try {
      refused.add(realpathSync(abs));
    } catch {
      // Not there (yet): the path as given is what a mount would name.
    }
  }
  return {
    allowedMounts: config.allowMounts.map((m) => ({ path: m.path, readOnly: m.readOnly })),
    hostNetwork: config.allowHostNetwork,
    root: config.allowContainerRoot,
    refusedPaths: [...refused],
  };
}
