/**
 * Plain HTTP(S) requests to etcd's own endpoints (/health, the v3 JSON
 * gateway, the peer API's /members), outside the gRPC client: they work
 * before a member is healthy and say exactly what failed.
 */
import * as http from 'node:http';
import * as https from 'node:https';

/** What a request presents with TLS: the cluster CA and the node's certificate and key. */
export interface HttpTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/**
 * One request; rejects on a transport error or no answer within timeoutMs.
 * With https and `tls`, the chain is checked against the cluster CA but not
 * the name (members are dialled by address, a wildcard listen host as
 * loopback).
 */
export function httpRequest(
  method: string,
  url: string,
  body: string | undefined,
  timeoutMs: number,
  signal?: AbortSignal,
  tls?: HttpTls,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const secure = url.startsWith('https://');
    const request = secure ? https.request : http.request;
    const req = request(
      url,
      {
        method,
        agent: false,
        signal,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        ...(secure && tls ? { ca: tls.ca, cert: tls.cert, key: tls.key, checkServerIdentity: () => undefined } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
      },
    );
    const timer = setTimeout(
      () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)),
      Math.max(1, timeoutMs),
    );
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end(body);
  });
}
