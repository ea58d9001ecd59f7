/**
 * The HTTP API's event hub over a real feed (real etcd, a real node making
 * the task changes): a client that does not keep up is dropped, told why,
 * and closed, while the others go on; the feed runs only while a client is
 * connected.
 */
import { Etcd3 } from 'etcd3';
import { connectEtcd, Kv } from '../../src/etcd/client';
import { Keys } from '../../src/store/keys';
import { StatusFeed } from '../../src/store/status-feed';
import { EventClient, EventHub } from '../../src/node/event-hub';
import { testEtcdEndpoint, uniqueRoot, waitFor } from '../support/etcd';
import { spec, startNode, stopNode, TestNode } from '../support/nodes';

jest.setTimeout(60_000);

class Sink implements EventClient {
  text = '';
  closed = false;
  constructor(public backlog = 0) {}
  buffered(): number {
    return this.backlog;
  }
  write(t: string): void {
    this.text += t;
  }
  close(): void {
    this.closed = true;
  }
}

describe('the event hub', () => {
  let client: Etcd3;
  let n: TestNode;
  const root = uniqueRoot();
  beforeAll(async () => {
    client = connectEtcd({ endpoints: [testEtcdEndpoint()] });
    n = await startNode(root, 'ev', { slots: 2 });
  });
  afterAll(async () => {
    await stopNode(n);
    client.close();
  });

  it('drops a client that does not keep up, keeps the others, and stops its feed after the last', async () => {
    const feeds: StatusFeed[] = [];
    let stops = 0;
    const hub = new EventHub({
      feed: (f) => {
        const feed = new StatusFeed(new Kv(client), new Keys(root), f, () => undefined);
        const stop = feed.stop.bind(feed);
        feed.stop = () => { stops++; return stop(); };
        feeds.push(feed);
        return feed;
      },
      nodes: () => [], onNodesChange: () => undefined, log: () => undefined, maxBufferedBytes: 1000, queueEveryMs: 100,
    });
    const fast = new Sink();
    const slow = new Sink();
    const removeFast = await hub.add(fast);
    const removeSlow = await hub.add(slow);
    try {
      expect(feeds).toHaveLength(1);
      slow.backlog = 10_000;
      const [id] = await n.api.submit([spec(['true'])]);
      await n.api.wait(id);
      await waitFor(() => fast.text.includes(`"id":"${id}","state":"completed"`), { what: 'the completed event' });
      expect(slow.closed).toBe(true);
      expect(slow.text).toMatch(/event: dropped\ndata: .*read too slowly/);
      expect(hub.dropped).toBe(1);
      expect(fast.closed).toBe(false);
      expect(hub.size).toBe(1);
      removeSlow(); // already gone: a no-op
      expect(stops).toBe(0);
      removeFast();
      expect(stops).toBe(1);
      expect(hub.size).toBe(0);
    } finally {
      // A failure above must not leave the feed's watch open (jest would not exit).
      removeSlow();
      removeFast();
    }
  });
});
