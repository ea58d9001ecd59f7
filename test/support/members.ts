/**
 * EtcdMembers of the shared test etcd (one member), for API servers built in
 * tests: `loom members` lists it, and a removal is always refused (it
 * answers, and it is the only voter).
 */
import { connectEtcd } from '../../src/etcd/client';
import { EtcdMembers, probeWith } from '../../src/etcd/members';
import { testEtcdEndpoint } from './etcd';

export function testEtcdMembers(): { members: EtcdMembers; close: () => void } {
  const client = connectEtcd({ endpoints: [testEtcdEndpoint()] });
  const members = new EtcdMembers(client, probeWith((url) => connectEtcd({ endpoints: [url], ownConnection: true })));
  return { members, close: () => client.close() };
}
