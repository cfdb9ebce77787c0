import type { IModelEvent, IPromotion } from '../api';
import {
  describeEvent,
  describePending,
  formatBytes,
  formatDatasets,
  formatMetrics,
  formatNumber,
  formatWhen,
  shortSha,
  stateLabel
} from '../format';

describe('formatBytes', () => {
  it.each([
    [null, '—'],
    [undefined, '—'],
    [NaN, '—'],
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.0 KiB'],
    [1536, '1.5 KiB'],
    [10 * 1024, '10 KiB'],
    [50 * 1024 * 1024, '50 MiB'],
    [3.25 * 1024 ** 3, '3.3 GiB'],
    [2 * 1024 ** 5, '2048 TiB']
  ])('%p -> %s', (bytes, expected) => {
    expect(formatBytes(bytes as number | null | undefined)).toBe(expected);
  });
});

describe('metrics, shas, datasets', () => {
  it.each([
    [3, '3'],
    [0.912345, '0.9123'],
    [123.456789, '123.5'],
    [1e-7, '1e-7'],
    [Infinity, 'Infinity']
  ])('formatNumber(%p) = %s', (value, expected) => {
    expect(formatNumber(value)).toBe(expected);
  });

  it('sorts metrics by name', () => {
    expect(formatMetrics({ loss: 0.25, auc: 0.912345, epochs: 3 })).toBe(
      'auc=0.9123 epochs=3 loss=0.25'
    );
    expect(formatMetrics({})).toBe('');
  });

  it('shortens shas', () => {
    expect(shortSha('0123456789abcdef')).toBe('0123456789');
    expect(shortSha('0123456789abcdef', 7)).toBe('0123456');
    expect(shortSha(null)).toBe('—');
  });

  it('shows dataset versions without their git revs', () => {
    expect(
      formatDatasets({ multi: 'v1.0.0@beef', iris: 'v1.1.0@0123abcd' })
    ).toBe('iris@v1.1.0 multi@v1.0.0');
  });
});

describe('formatWhen', () => {
  const now = new Date('2026-11-21T12:00:00Z');
  it.each([
    ['2026-11-21T11:59:30+00:00', 'just now'],
    ['2026-11-21T11:55:00+00:00', '5 min ago'],
    ['2026-11-21T09:00:00+00:00', '3 h ago'],
    ['2026-11-19T08:30:00+00:00', '2026-11-19 08:30 UTC'],
    ['2026-11-21T12:30:00+00:00', '2026-11-21 12:30 UTC'], // in the future: clock skew
    ['not a time', 'not a time']
  ])('%s -> %s', (iso, expected) => {
    expect(formatWhen(iso, now)).toBe(expected);
  });
});

describe('stateLabel', () => {
  it.each([
    ['unchanged', [], 'unchanged'],
    ['modified', ['iris.csv'], 'modified (1 file)'],
    ['modified', ['a', 'b'], 'modified (2 files)'],
    ['modified', [], 'modified'],
    ['missing', [], 'missing (deleted since the pull)'],
    ['unknown', [], 'unknown (no snapshot)']
  ] as const)('%s %j -> %s', (state, changed, expected) => {
    expect(stateLabel({ state, changed: [...changed] })).toBe(expected);
  });
});

describe('promotions', () => {
  const event = {
    alias: 'production',
    actor: 'rita',
    note: '',
    time: '2026-12-01T10:00:00Z'
  };
  it.each([
    [
      {
        ...event,
        event: 'approved',
        from_version: '1',
        to_version: '2',
        note: 'ok'
      },
      'rita approved production v1 → v2 (ok)'
    ],
    [
      {
        ...event,
        event: 'requested',
        actor: 'alice',
        from_version: null,
        to_version: '1'
      },
      'alice asked for production none → v1'
    ],
    [
      { ...event, event: 'rollback', from_version: '2', to_version: '1' },
      'rita rolled back production v2 → v1'
    ]
  ])('%p', (e, expected) => {
    expect(describeEvent(e as IModelEvent)).toBe(expected);
  });

  it('names failing gates of a pending request', () => {
    const pending = {
      id: 'a'.repeat(32),
      model: 'churn',
      alias: 'production',
      version: '3',
      requester: 'alice',
      note: '',
      state: 'pending',
      created: '2026-12-01T10:00:00Z',
      gates: [
        { name: 'signature', passed: true, detail: '' },
        { name: 'lineage', passed: false, detail: 'no git sha' }
      ]
    } as IPromotion;
    expect(describePending(pending)).toBe(
      'v3 → production by alice · gates: lineage failed'
    );
    pending.gates = [];
    expect(describePending(pending)).toBe(
      'v3 → production by alice · gates passed'
    );
  });
});
