/**
 * deploy/kubernetes/ and deploy/grafana/ against the code they deploy: every
 * `loom node` argument list parses with loom's own parser, names and ports
 * agree between objects, the autoscale policy parses and points at the
 * worker Deployment, and every metric the KEDA query or a Grafana panel
 * reads is one a node exports. (No Kubernetes runs here; this is what can be
 * checked without one.)
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseAllDocuments } from 'yaml';
import { parseNodeArgs } from '../../src/bin/node-command';
import { parseAutoscalePolicy } from '../../src/core/autoscale';

const ROOT = path.resolve(__dirname, '../../..');
const K8S = path.join(ROOT, 'deploy', 'kubernetes');
type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const docs: Obj[] = fs.readdirSync(K8S).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
  .flatMap((f) => parseAllDocuments(fs.readFileSync(path.join(K8S, f), 'utf8')).map((d) => d.toJS() as Obj));
const find = (kind: string, name: string): Obj => {
  const o = docs.find((d) => d.kind === kind && d.metadata.name === name);
  if (!o) throw new Error(`no ${kind} ${name} in deploy/kubernetes`);
  return o;
};
const sts = find('StatefulSet', 'loom');
const worker = find('Deployment', 'loom-worker');
const container = (o: Obj): Obj => o.spec.template.spec.containers[0];
const flag = (args: string[], name: string): string[] => args.filter((a) => a.startsWith(`${name}=`)).map((a) => a.slice(name.length + 1));

/** A pod's args as Kubernetes expands them ($(VAR) from the container's env), with --autoscale pointed at the ConfigMap's policy. */
function expanded(o: Obj, podName: string): string[] {
  const c = container(o);
  const env = new Map<string, string>((c.env ?? []).map((e: Obj) => [e.name, e.valueFrom?.fieldRef?.fieldPath === 'metadata.name' ? podName : '10.0.0.7']));
  return (c.args as string[]).map((a) => a.replace(/\$\(([A-Z_]+)\)/g, (_, v: string) => {
    if (!env.has(v)) throw new Error(`${o.metadata.name}: $(${v}) is not in the container's env`);
    return env.get(v)!;
  }));
}

const policyText = find('ConfigMap', 'loom-autoscale').data['autoscale.yaml'] as string;
const policyFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'loom-deploy-')), 'autoscale.yaml');
fs.writeFileSync(policyFile, policyText);
const parse = (args: string[]) => parseNodeArgs(args.slice(1).map((a) => (a.startsWith('--autoscale=') ? `--autoscale=${policyFile}` : a)), {});

/** Metric names a node exports (node-metrics.ts, http-endpoints.ts). */
const exported = new Set(['src/node/node-metrics.ts', 'src/node/http-endpoints.ts']
  .flatMap((f) => [...fs.readFileSync(path.join(ROOT, f), 'utf8').matchAll(/['"]((?:loom|process|nodejs)_[a-z_]+)['"]/g)].map((m) => m[1])));
const metricsIn = (expr: string) => [...expr.matchAll(/\b((?:loom|process|nodejs)_[a-z_]+)\b/g)].map((m) => m[1]);

describe('deploy/kubernetes', () => {
  it('gives each member flags loom node accepts, with the three members as its etcd peers', () => {
    expect(sts.spec.replicas).toBe(3);
    const members = Array.from({ length: 3 }, (_, i) => `loom-${i}`);
    const host = (m: string) => `${m}.${sts.spec.serviceName}.${sts.metadata.namespace}.svc.cluster.local`;
    for (const m of members) {
      const args = expanded(sts, m);
      expect(args[0]).toBe('node');
      const c = parse(args);
      expect(c.name).toBe(m);
      expect(c.peers).toEqual(members.map((name) => ({ name, url: `http://${host(name)}:2380` })));
      expect(c.peerAdvertise).toBe(`http://${host(m)}:2380`);
      expect(c.clientAdvertise).toBe(`http://${host(m)}:2379`);
      expect(c.autoscale?.provider.kind).toBe('kubernetes');
    }
  });

  it('points the workers at the members\' etcd, in the group the policy scales', () => {
    const c = parse(expanded(worker, 'loom-worker-abc12'));
    const members = parse(expanded(sts, 'loom-0'));
    expect(c.etcdEndpoints).toEqual([0, 1, 2].map((i) => members.clientAdvertise.replace('loom-0', `loom-${i}`)));
    const policy = parseAutoscalePolicy(require('yaml').parse(policyText));
    expect(policy.provider).toMatchObject({ kind: 'kubernetes', deployment: worker.metadata.name });
    expect(c.labels.autoscale).toBe(policy.group);
    expect(c.slots).toBe(policy.slotsPerNode);
    expect(policy.max).toBe(find('ScaledObject', 'loom-worker').spec.maxReplicaCount);
  });

  it('lets the autoscaler\'s service account do what the kubernetes provider does', () => {
    const role = find('Role', 'loom-autoscaler');
    expect(role.rules).toEqual(expect.arrayContaining([
      expect.objectContaining({ apiGroups: ['apps'], resources: ['deployments/scale'], resourceNames: [worker.metadata.name], verbs: expect.arrayContaining(['get', 'patch']) }),
      expect.objectContaining({ apiGroups: [''], resources: ['pods'], verbs: ['patch'] }),
    ]));
    const binding = find('RoleBinding', 'loom-autoscaler');
    expect(binding.roleRef.name).toBe(role.metadata.name);
    expect(binding.subjects).toContainEqual(expect.objectContaining({ kind: 'ServiceAccount', name: sts.spec.template.spec.serviceAccountName }));
    const mount = container(sts).volumeMounts.find((v: Obj) => v.name === 'autoscale');
    expect(flag(container(sts).args, '--autoscale')).toEqual([`${mount.mountPath}/autoscale.yaml`]);
    expect(sts.spec.template.spec.volumes.find((v: Obj) => v.name === 'autoscale').configMap.name).toBe('loom-autoscale');
  });

  it('names ports that the flags listen on, and selects the pods it means', () => {
    for (const o of [sts, worker]) {
      const ports = new Map<string, number>(container(o).ports.map((p: Obj) => [p.name, p.containerPort]));
      const args = expanded(o, 'loom-0');
      const port = (name: string) => Number(/:(\d+)$/.exec(flag(args, name)[0] ?? '')?.[1]);
      expect(ports.get('grpc')).toBe(port('--listen'));
      expect(ports.get('metrics')).toBe(port('--metrics-listen'));
      expect(String(o.spec.template.metadata.annotations['prometheus.io/port'])).toBe(String(ports.get('metrics')));
      if (o === sts) {
        expect(ports.get('http')).toBe(port('--http-listen'));
        expect(ports.get('etcd-client')).toBe(port('--client-listen'));
        expect(ports.get('etcd-peer')).toBe(port('--peer-listen'));
      }
      expect(o.spec.selector.matchLabels).toEqual(o.spec.template.metadata.labels);
    }
    const memberPorts = new Set(container(sts).ports.map((p: Obj) => p.name));
    for (const name of ['loom', 'loom-peers']) {
      const svc = find('Service', name);
      expect(svc.spec.selector).toEqual(sts.spec.selector.matchLabels);
      for (const p of svc.spec.ports) expect(memberPorts).toContain(p.targetPort);
    }
    const peers = find('Service', sts.spec.serviceName);
    expect(peers.spec).toMatchObject({ clusterIP: 'None', publishNotReadyAddresses: true });
    // One member down at a time keeps 2 of 3: etcd's quorum.
    const pdb = find('PodDisruptionBudget', 'loom');
    expect(pdb.spec).toEqual({ maxUnavailable: 1, selector: { matchLabels: sts.spec.selector.matchLabels } });
  });

  it('scales the same Deployment with KEDA on a metric a node exports', () => {
    const keda = find('ScaledObject', 'loom-worker');
    expect(keda.spec.scaleTargetRef.name).toBe(worker.metadata.name);
    const metrics = keda.spec.triggers.flatMap((t: Obj) => metricsIn(t.metadata.query));
    expect(metrics).toEqual(['loom_queue_depth']);
    for (const m of metrics) expect(exported).toContain(m);
  });
});

describe('docker-compose.yml', () => {
  it('gives each node flags loom node accepts, its etcd peers the other services at their fixed addresses', () => {
    const compose = require('yaml').parse(fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as Obj;
    const services = Object.entries(compose.services as Record<string, Obj>);
    expect(services.length).toBe(3);
    const ip = (name: string) => compose.services[name].networks.loom.ipv4_address as string;
    for (const [name, svc] of services) {
      expect(svc.build).toBe('.');
      expect(svc.command[0]).toBe('node');
      const c = parseNodeArgs(svc.command.slice(1), {});
      expect(c.name).toBe(name);
      expect(c.peerListen).toBe(`http://${ip(name)}:2380`);
      expect(c.peers).toEqual(services.filter(([n]) => n !== name).map(([n]) => ({ name: n, url: `http://${ip(n)}:2380` })));
      expect(svc.volumes).toEqual([`${name}-data:${c.dataDir}`]);
    }
  });
});

describe('deploy/grafana', () => {
  it('only charts series a node exports', () => {
    const dash = JSON.parse(fs.readFileSync(path.join(ROOT, 'deploy', 'grafana', 'loom.json'), 'utf8')) as Obj;
    const exprs: string[] = dash.panels.flatMap((p: Obj) => (p.targets ?? []).map((t: Obj) => t.expr));
    expect(exprs.length).toBeGreaterThanOrEqual(8);
    const used = new Set(exprs.flatMap(metricsIn));
    expect([...used].filter((m) => !exported.has(m))).toEqual([]);
    for (const m of ['loom_queue_depth', 'loom_tasks_running', 'loom_claims_lost_total', 'loom_lease_held']) expect(used).toContain(m);
  });
});
