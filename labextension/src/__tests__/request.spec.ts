/**
 * @jest-environment node
 *
 * The request layer against a real HTTP server (node's `http`), through
 * JupyterLab's own `ServerConnection` and node's `fetch`.
 */
import * as http from 'http';
import { AddressInfo } from 'net';

import { ServerConnection } from '@jupyterlab/services';

import { DsdataAPI } from '../api';
import {
  apiURL,
  errorMessage,
  messageOf,
  parseBody,
  requestAPI
} from '../request';

interface ISeen {
  method: string;
  url: string;
  authorization: string;
  contentType: string;
  body: string;
}

let server: http.Server;
let baseUrl: string;
const seen: ISeen[] = [];

/** Routes of the fake extension: status, content type and body per path. */
function reply(path: string): [number, string, string] {
  if (path.startsWith('/base/dsdata/api/datasets/iris')) {
    return [
      200,
      'application/json',
      '{"name": "iris", "versions": ["v1.0.0"]}'
    ];
  }
  if (path.startsWith('/base/dsdata/api/datasets')) {
    return [200, 'application/json', '{"datasets": [{"name": "iris"}]}'];
  }
  if (path.startsWith('/base/dsdata/api/pulls')) {
    return [202, 'application/json', '{"id": "abc123"}'];
  }
  if (path.startsWith('/base/dsdata/api/experiments')) {
    return [
      409,
      'application/json',
      '{"message": "Nothing changed since the last commit (0123456789): edit code, params or outputs first"}'
    ];
  }
  if (path.startsWith('/base/dsdata/api/models')) {
    return [502, 'text/html', '<html>Bad Gateway</html>'.repeat(40)];
  }
  if (path.startsWith('/base/dsdata/api/lineage')) {
    return [500, 'text/plain', 'disk full'];
  }
  if (path.startsWith('/base/dsdata/api/empty')) {
    return [204, 'text/plain', ''];
  }
  return [404, 'application/json', '{"message": "No such route"}'];
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', chunk => (body += chunk));
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        authorization: String(req.headers.authorization ?? ''),
        contentType: String(req.headers['content-type'] ?? ''),
        body
      });
      const [status, type, text] = reply(req.url ?? '');
      res.writeHead(status, { 'Content-Type': type });
      res.end(text);
    });
  });
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  baseUrl = `http://127.0.0.1:${port}/base/`;
});

afterAll(async () => {
  await new Promise(resolve => server.close(resolve));
});

beforeEach(() => {
  seen.length = 0;
});

function settings(): ServerConnection.ISettings {
  return ServerConnection.makeSettings({ baseUrl, token: 'secret-token' });
}

describe('apiURL', () => {
  it.each([
    ['http://h/base/', 'datasets', {}, 'http://h/base/dsdata/api/datasets'],
    ['http://h/base', 'pulls/ab12', {}, 'http://h/base/dsdata/api/pulls/ab12'],
    [
      '/user/alice/',
      'experiments',
      { n: 5 },
      '/user/alice/dsdata/api/experiments?n=5'
    ],
    [
      'http://h/',
      'experiments',
      { n: 3, skip: undefined, none: null, q: 'a b&c' },
      'http://h/dsdata/api/experiments?n=3&q=a%20b%26c'
    ]
  ])('%s + %s', (base, endPoint, query, expected) => {
    expect(apiURL(base, endPoint, query)).toBe(expected);
  });
});

describe('parseBody and errorMessage', () => {
  it('parses JSON, keeps text, gives null for nothing', () => {
    expect(parseBody('{"a": [1, 2]}')).toEqual({ a: [1, 2] });
    expect(parseBody('not json')).toBe('not json');
    expect(parseBody('')).toBeNull();
  });

  it.each([
    [409, 'Conflict', { message: 'Nothing changed' }, 'Nothing changed'],
    [400, 'Bad Request', { message: '' }, 'Request failed: 400 Bad Request'],
    [400, 'Bad Request', { message: 3 }, 'Request failed: 400 Bad Request'],
    [500, 'Server Error', ' disk full\n', 'disk full'],
    [502, 'Bad Gateway', 'x'.repeat(501), 'Request failed: 502 Bad Gateway'],
    [503, '', null, 'Request failed: 503']
  ])('%d %s %j -> %s', (status, text, body, expected) => {
    expect(errorMessage(status, text, body)).toBe(expected);
  });
});

describe('requestAPI over HTTP', () => {
  it('GETs JSON with the token and the API prefix', async () => {
    const data = await requestAPI<{ datasets: { name: string }[] }>(
      'datasets',
      {},
      settings()
    );
    expect(data.datasets[0].name).toBe('iris');
    expect(seen).toHaveLength(1);
    expect(seen[0].method).toBe('GET');
    expect(seen[0].url).toMatch(/^\/base\/dsdata\/api\/datasets\?\d+$/); // cache buster
    expect(seen[0].authorization).toBe('token secret-token');
  });

  it('POSTs a JSON body and reads a 202', async () => {
    const api = new DsdataAPI(settings());
    const started = await api.startPull({ dataset: 'iris', version: 'v1' });
    expect(started).toEqual({ id: 'abc123' });
    expect(seen[0].method).toBe('POST');
    expect(seen[0].contentType).toBe('application/json');
    expect(JSON.parse(seen[0].body)).toEqual({
      dataset: 'iris',
      version: 'v1'
    });
  });

  it('sends query parameters', async () => {
    const api = new DsdataAPI(settings());
    await expect(api.experiments(7)).rejects.toThrow('Nothing changed');
    expect(seen[0].url).toMatch(/^\/base\/dsdata\/api\/experiments\?n=7&\d+$/);
  });

  it("propagates the server's JSON message with the response", async () => {
    const error = await requestAPI(
      'experiments',
      { method: 'POST', body: '{}' },
      settings()
    ).then(
      () => null,
      (e: unknown) => e
    );
    expect(error).toBeInstanceOf(ServerConnection.ResponseError);
    const responseError = error as ServerConnection.ResponseError;
    expect(responseError.response.status).toBe(409);
    expect(responseError.message).toBe(
      'Nothing changed since the last commit (0123456789): edit code, params or outputs first'
    );
    expect(messageOf(error)).toBe(responseError.message);
  });

  it('uses a short text body, else the status line', async () => {
    await expect(requestAPI('lineage', {}, settings())).rejects.toThrow(
      /^disk full$/
    );
    await expect(requestAPI('models', {}, settings())).rejects.toThrow(
      'Request failed: 502 Bad Gateway'
    );
    await expect(requestAPI('nowhere', {}, settings())).rejects.toThrow(
      'No such route'
    );
  });

  it('gives null for an empty body', async () => {
    expect(await requestAPI('empty', {}, settings())).toBeNull();
  });

  it('encodes names in paths', async () => {
    const api = new DsdataAPI(settings());
    await api.pull('a/b c');
    expect(seen[0].url).toMatch(/^\/base\/dsdata\/api\/pulls\/a%2Fb%20c\?\d+$/);
  });

  it('turns an unreachable server into a NetworkError', async () => {
    const closed = http.createServer();
    await new Promise<void>(resolve => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise(resolve => closed.close(resolve));
    const gone = ServerConnection.makeSettings({
      baseUrl: `http://127.0.0.1:${port}/`
    });
    const error = await requestAPI('datasets', {}, gone).then(
      () => null,
      (e: unknown) => e
    );
    expect(error).toBeInstanceOf(ServerConnection.NetworkError);
    expect(messageOf(error)).toBeTruthy();
  });
});
