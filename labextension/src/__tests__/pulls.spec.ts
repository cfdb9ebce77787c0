import type { IPull } from '../api';
import {
  isFinished,
  mergePull,
  parseEventStream,
  pullFraction,
  pullLabel,
  visiblePulls
} from '../pulls';

function pull(overrides: Partial<IPull> = {}): IPull {
  return {
    id: 'p1',
    status: 'running',
    request: { dataset: 'iris', version: 'v1', path: null, force: false },
    progress: { phase: 'resolving' },
    result: null,
    error: null,
    ...overrides
  };
}

const RESULT = {
  dataset: 'iris',
  version: 'v1.1.0',
  tag: 'iris@v1.1.0',
  rev: 'abc',
  registry: '/reg',
  path: 'data/iris',
  content_hash: 'h.dir',
  files: 1,
  bytes: 4096,
  downloaded_objects: 1,
  from_cache: false,
  seconds: 0.5
};

describe('progress', () => {
  it.each([
    [{ phase: 'resolving' }, null],
    [{ phase: 'downloading', bytes_done: 0, bytes_total: 100 }, 0],
    [{ phase: 'downloading', bytes_done: 25, bytes_total: 100 }, 0.25],
    // DVC may count a manifest beyond the total: never more than 100 %
    [{ phase: 'downloading', bytes_done: 130, bytes_total: 100 }, 1],
    [
      {
        phase: 'downloading',
        bytes_total: null,
        files_done: 3,
        files_total: 4
      },
      0.75
    ],
    [{ phase: 'downloading', bytes_total: 0, files_total: 0 }, null],
    [{ phase: 'linking' }, 1]
  ] as const)('%j -> %p', (progress, expected) => {
    expect(pullFraction(pull({ progress: { ...progress } }))).toBe(expected);
  });

  it('is complete when done', () => {
    expect(pullFraction(pull({ status: 'done', progress: {} }))).toBe(1);
  });

  it('labels each phase', () => {
    expect(pullLabel(pull())).toBe('iris@v1: resolving the version');
    expect(
      pullLabel(
        pull({
          progress: {
            phase: 'downloading',
            bytes_done: 1536,
            bytes_total: 4096,
            files_done: 1,
            files_total: 2
          }
        })
      )
    ).toBe('iris@v1: downloading 1.5 KiB of 4.0 KiB, 1/2 files');
    expect(
      pullLabel(
        pull({
          request: {
            dataset: 'multi',
            version: null,
            path: null,
            force: false
          },
          progress: { phase: 'downloading', bytes_done: 10 }
        })
      )
    ).toBe('multi: downloading 10 B');
    expect(pullLabel(pull({ progress: { phase: 'linking' } }))).toBe(
      'iris@v1: writing into the workspace'
    );
  });

  it('labels how it ended', () => {
    expect(pullLabel(pull({ status: 'done', result: RESULT }))).toBe(
      'iris v1.1.0 → data/iris (1 file, 4.0 KiB)'
    );
    expect(
      pullLabel(
        pull({
          status: 'done',
          result: { ...RESULT, files: 3, from_cache: true }
        })
      )
    ).toBe('iris v1.1.0 → data/iris (3 files, from the cache)');
    expect(
      pullLabel(
        pull({
          status: 'failed',
          error: { message: 'data/iris has local changes', status: 409 }
        })
      )
    ).toBe('iris@v1: failed: data/iris has local changes');
  });
});

describe('state reduction', () => {
  it('adds and replaces pulls by id', () => {
    const first = mergePull({}, pull());
    const later = mergePull(
      first,
      pull({ progress: { phase: 'downloading', bytes_done: 5 } })
    );
    expect(Object.keys(later)).toEqual(['p1']);
    expect(later.p1.progress.bytes_done).toBe(5);
    expect(first.p1.progress.phase).toBe('resolving'); // not mutated
  });

  it('never lets a late running state replace a finished one', () => {
    const done = mergePull({}, pull({ status: 'done', result: RESULT }));
    const after = mergePull(done, pull({ progress: { phase: 'linking' } }));
    expect(after.p1.status).toBe('done');
    expect(isFinished(after.p1)).toBe(true);
    const failed = mergePull(
      done,
      pull({ status: 'failed', error: { message: 'x', status: 500 } })
    );
    expect(failed.p1.status).toBe('failed');
  });

  it('shows running pulls first', () => {
    let pulls = mergePull(
      {},
      pull({ id: 'a', status: 'done', result: RESULT })
    );
    pulls = mergePull(pulls, pull({ id: 'b' }));
    pulls = mergePull(pulls, pull({ id: 'c', status: 'failed' }));
    pulls = mergePull(pulls, pull({ id: 'd' }));
    expect(visiblePulls(pulls).map(p => p.id)).toEqual(['b', 'd', 'a', 'c']);
  });
});

describe('Server-Sent Events', () => {
  const event = (p: IPull) => `data: ${JSON.stringify(p)}\n\n`;

  it('splits complete events and keeps the rest', () => {
    const running = pull();
    const done = pull({ status: 'done', result: RESULT });
    const text = event(running) + event(done);
    const cut = text.length - 10;
    const first = parseEventStream(text.slice(0, cut));
    expect(first.events).toEqual([running]);
    const second = parseEventStream(first.rest + text.slice(cut));
    expect(second.events).toEqual([done]);
    expect(second.rest).toBe('');
  });

  it('handles CRLF, multi-line data, comments and other fields', () => {
    const text =
      ': keep-alive\r\n\r\n' +
      'event: progress\r\nid: 7\r\ndata: {"id": "p1",\r\ndata: "status": "running"}\r\n\r\n';
    const { events, rest } = parseEventStream(text);
    expect(events).toEqual([{ id: 'p1', status: 'running' }]);
    expect(rest).toBe('');
  });

  it('waits for the blank line', () => {
    expect(parseEventStream('data: {"id": 1}\n')).toEqual({
      events: [],
      rest: 'data: {"id": 1}\n'
    });
  });
});
