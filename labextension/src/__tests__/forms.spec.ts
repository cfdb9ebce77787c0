import type { IDataset, IRun } from '../api';
import {
  commitRequest,
  defaultImportName,
  defaultPullPath,
  FormError,
  parseMetrics,
  parsePairs,
  parsePaths,
  importRequest,
  publishRequest,
  pullRequest,
  runChoices,
  runJobRequest,
  versionChoices
} from '../forms';

const IRIS: IDataset = {
  name: 'iris',
  registry: '/reg',
  description: 'Iris flowers',
  labels: ['tabular'],
  versions: ['v1.0.0', 'v1.1.0', 'v2.0.0'],
  stages: { prod: 'v1.1.0', dev: 'v2.0.0' },
  latest: 'v2.0.0',
  size: 100,
  nfiles: 1
};

describe('pull dialog', () => {
  it('offers latest, versions newest first, then stages', () => {
    expect(versionChoices(IRIS)).toEqual([
      { value: '', label: 'latest (v2.0.0)' },
      { value: 'v2.0.0', label: 'v2.0.0' },
      { value: 'v1.1.0', label: 'v1.1.0' },
      { value: 'v1.0.0', label: 'v1.0.0' },
      { value: 'dev', label: 'dev (v2.0.0)' },
      { value: 'prod', label: 'prod (v1.1.0)' }
    ]);
    expect(versionChoices({ ...IRIS, stages: undefined })).toHaveLength(4);
  });

  it.each([
    ['iris', 'data', 'data/iris'],
    ['iris', '/work/data/', 'work/data/iris'],
    ['iris', '', 'iris'],
    ['iris', '/', 'iris']
  ])('proposes %s under %p as %s', (name, folder, expected) => {
    expect(defaultPullPath(name, folder)).toBe(expected);
  });

  it('proposes the file name of a single-file dataset, the name of a nested one', () => {
    const file = { path: 'data/tables/table.csv', kind: 'file' as const };
    expect(defaultPullPath('table', 'data', file)).toBe('data/table.csv');
    expect(defaultPullPath('sub:feats', 'data')).toBe('data/feats');
    expect(defaultPullPath('iris', 'data', { path: 'data/iris' })).toBe(
      'data/iris'
    );
  });

  it('builds the pull request', () => {
    expect(
      pullRequest({
        dataset: 'iris',
        version: '',
        path: ' data/iris ',
        force: false
      })
    ).toEqual({ dataset: 'iris', path: 'data/iris', force: false });
    expect(
      pullRequest({ dataset: 'iris', version: 'v1', path: '/x/y', force: true })
    ).toEqual({ dataset: 'iris', version: 'v1', path: 'x/y', force: true });
    expect(
      pullRequest({ dataset: 'iris', version: 'prod', path: '', force: false })
    ).toEqual({ dataset: 'iris', version: 'prod', force: false });
    expect(() =>
      pullRequest({ dataset: ' ', version: '', path: '', force: false })
    ).toThrow(new FormError('Choose a dataset to pull'));
  });
});

describe('commit dialog', () => {
  it('parses key=value pairs by line or comma', () => {
    expect(
      parsePairs('lr=0.1\n depth = 3 ,note=two words\n\n', 'param')
    ).toEqual({
      lr: '0.1',
      depth: '3',
      note: 'two words'
    });
    expect(parsePairs('expr=a=b', 'param')).toEqual({ expr: 'a=b' });
    expect(parsePairs('', 'param')).toEqual({});
  });

  it.each([
    ['lr', "Invalid param 'lr': use key=value"],
    ['=3', "Invalid param '=3': use key=value"]
  ])('refuses %p', (text, message) => {
    expect(() => parsePairs(text, 'param')).toThrow(new FormError(message));
  });

  it('sends numbers as numbers and the rest as typed, for the server to judge', () => {
    expect(parseMetrics('auc=0.91\nloss=1e-3\nn=10\nbad=high\nempty=')).toEqual(
      {
        auc: 0.91,
        loss: 0.001,
        n: 10,
        bad: 'high',
        empty: ''
      }
    );
  });

  it('splits output paths', () => {
    expect(parsePaths(' model/, plots  out.csv\n')).toEqual([
      'model/',
      'plots',
      'out.csv'
    ]);
  });

  it('builds the commit request', () => {
    expect(
      commitRequest({
        message: ' tuned lr ',
        params: 'lr=0.05',
        metrics: 'auc=0.9',
        outputs: 'model/'
      })
    ).toEqual({
      message: 'tuned lr',
      params: { lr: '0.05' },
      metrics: { auc: 0.9 },
      outputs: ['model/']
    });
    expect(
      commitRequest({ message: 'm', params: '', metrics: '', outputs: '' })
    ).toEqual({
      message: 'm'
    });
    expect(() =>
      commitRequest({ message: '  ', params: '', metrics: '', outputs: '' })
    ).toThrow(new FormError('A commit message is required'));
    expect(() =>
      commitRequest({ message: 'm', params: '', metrics: 'auc', outputs: '' })
    ).toThrow("Invalid metric 'auc': use key=value");
  });
});

describe('publish dialog', () => {
  const runs: IRun[] = [
    {
      run_id: null,
      status: 'queued',
      message: 'waiting',
      metrics: {},
      git_sha: 'a',
      datasets: {},
      time: '',
      url: null
    },
    {
      run_id: '0123456789abcdef0123456789abcdef',
      status: 'finished',
      message: 'first run',
      metrics: {},
      git_sha: 'b',
      datasets: {},
      time: '',
      url: null
    },
    {
      run_id: 'fedcba9876543210fedcba9876543210',
      status: 'finished',
      message: '',
      metrics: {},
      git_sha: 'c',
      datasets: {},
      time: '',
      url: null
    }
  ];

  it('offers only runs that are in MLflow', () => {
    expect(runChoices(runs)).toEqual([
      {
        value: '0123456789abcdef0123456789abcdef',
        label: 'first run · 01234567'
      },
      {
        value: 'fedcba9876543210fedcba9876543210',
        label: '(no message) · fedcba98'
      }
    ]);
  });

  const form = {
    model: ' churn ',
    source: 'run' as const,
    runId: 'abc',
    path: 'model/model.pkl',
    alias: ' staging '
  };

  it('builds from a run or from a path', () => {
    expect(publishRequest(form)).toEqual({
      model: 'churn',
      run_id: 'abc',
      alias: 'staging'
    });
    expect(publishRequest({ ...form, source: 'path', alias: '' })).toEqual({
      model: 'churn',
      path: 'model/model.pkl'
    });
  });

  it.each([
    [{ model: '' }, 'A model name is required'],
    [{ runId: ' ' }, 'Choose the run whose model to publish'],
    [
      { source: 'path' as const, path: '' },
      'Give the path of the model to publish'
    ]
  ])('refuses %j', (change, message) => {
    expect(() => publishRequest({ ...form, ...change })).toThrow(
      new FormError(message)
    );
  });
});

describe('importRequest', () => {
  const lake = {
    name: 'lake',
    type: 's3' as const,
    description: '',
    bucket: 'raw',
    prefix: 'events/'
  };
  const dwh = { name: 'dwh', type: 'sql' as const, description: '' };
  const form = { as: ' clicks ', path: '/2026-11/', query: '', params: '' };

  it('imports a lake path below the prefix', () => {
    expect(importRequest(lake, form)).toEqual({
      as: 'clicks',
      path: '2026-11/'
    });
  });

  it('imports a query with its parameters', () => {
    expect(
      importRequest(dwh, {
        ...form,
        query: ' SELECT * FROM t WHERE x >= :x ',
        params: 'x=3\ny = 4'
      })
    ).toEqual({
      as: 'clicks',
      query: 'SELECT * FROM t WHERE x >= :x',
      params: { x: '3', y: '4' }
    });
  });

  it('names what is missing', () => {
    expect(() => importRequest(lake, { ...form, as: ' ' })).toThrow(
      'Name the dataset'
    );
    expect(() => importRequest(dwh, form)).toThrow('give a SELECT query');
    expect(() =>
      importRequest(dwh, { ...form, query: 'SELECT 1', params: 'oops' })
    ).toThrow("Invalid parameter 'oops'");
  });

  it('proposes a dataset name from the path', () => {
    expect(defaultImportName(lake, '2026-11/')).toBe('lake'); // no letter: the connection
    expect(defaultImportName(lake, 'clicks/2026-11/')).toBe('lake');
    expect(defaultImportName(lake, 'clicks/')).toBe('clicks');
    expect(defaultImportName(lake, 'clicks/Day 1.JSON')).toBe('day-1');
    expect(defaultImportName(dwh)).toBe('dwh');
  });
});

describe('runJobRequest', () => {
  const form = {
    notebook: '/train.ipynb',
    profile: '',
    cpu: '',
    memory: '',
    gpus: '',
    parameters: '',
    wait: false,
    commit: false
  };

  it('sends only what was given', () => {
    expect(runJobRequest(form)).toEqual({
      notebook: 'train.ipynb',
      wait: false,
      commit: false
    });
  });

  it('types parameters as papermill -p does', () => {
    const request = runJobRequest({
      ...form,
      profile: 'gpu-a100',
      cpu: '2',
      gpus: '1',
      memory: '4G',
      parameters: 'lr=0.01\nepochs=20\nname=run a\nfast=true\nseed=null',
      wait: true
    });
    expect(request).toEqual({
      notebook: 'train.ipynb',
      profile: 'gpu-a100',
      cpu: 2,
      gpus: 1,
      memory: '4G',
      parameters: {
        lr: 0.01,
        epochs: 20,
        name: 'run a',
        fast: true,
        seed: null
      },
      wait: true,
      commit: false
    });
  });

  it('refuses what the hub would refuse', () => {
    expect(() => runJobRequest({ ...form, notebook: 'data.csv' })).toThrow(
      FormError
    );
    expect(() => runJobRequest({ ...form, cpu: 'lots' })).toThrow(FormError);
    expect(() => runJobRequest({ ...form, parameters: '2x=1' })).toThrow(
      "Parameter '2x' is not a Python name"
    );
  });
});
