/**
 * Pull progress: parsing the Server-Sent Events of `pulls/ID/events`, merging
 * updates into the panel's state, and what a progress bar shows. Pure, except
 * `followPull`, which drives them over the API.
 */
import type { IPull } from './api';
import { formatBytes } from './format';

/**
 * Whether a pull has ended (done or failed).
 */
export function isFinished(pull: Pick<IPull, 'status'>): boolean {
  return pull.status === 'done' || pull.status === 'failed';
}

/**
 * The fraction done (0..1), by bytes when the size is known, else by files;
 * `null` while it cannot be known (resolving).
 */
export function pullFraction(pull: IPull): number | null {
  if (pull.status === 'done') {
    return 1;
  }
  const p = pull.progress ?? {};
  if (p.phase === 'linking' || p.phase === 'done') {
    return 1;
  }
  if (p.bytes_total) {
    return Math.min(1, (p.bytes_done ?? 0) / p.bytes_total);
  }
  if (p.files_total) {
    return Math.min(1, (p.files_done ?? 0) / p.files_total);
  }
  return null;
}

/**
 * One line for the pull: what it does now, or how it ended.
 */
export function pullLabel(pull: IPull): string {
  const name = pull.request.version
    ? `${pull.request.dataset}@${pull.request.version}`
    : pull.request.dataset;
  if (pull.status === 'failed') {
    return `${name}: failed: ${pull.error?.message ?? 'unknown error'}`;
  }
  if (pull.status === 'done' && pull.result) {
    const r = pull.result;
    const how = r.from_cache ? 'from the cache' : `${formatBytes(r.bytes)}`;
    return `${r.dataset} ${r.version} → ${r.path} (${r.files} file${r.files === 1 ? '' : 's'}, ${how})`;
  }
  const p = pull.progress ?? {};
  switch (p.phase) {
    case 'downloading': {
      const total = p.bytes_total ? ` of ${formatBytes(p.bytes_total)}` : '';
      const files = p.files_total
        ? `, ${p.files_done ?? 0}/${p.files_total} files`
        : '';
      return `${name}: downloading ${formatBytes(p.bytes_done ?? 0)}${total}${files}`;
    }
    case 'linking':
      return `${name}: writing into the workspace`;
    case 'done':
      return `${name}: finishing`;
    default:
      return `${name}: resolving the version`;
  }
}

/**
 * Merge an update into the pulls by id. A finished pull stays finished: an
 * older `running` state (a late poll or event) never replaces it.
 */
export function mergePull(
  pulls: Readonly<Record<string, IPull>>,
  update: IPull
): Record<string, IPull> {
  const current = pulls[update.id];
  if (current && isFinished(current) && !isFinished(update)) {
    return { ...pulls };
  }
  return { ...pulls, [update.id]: update };
}

/**
 * Pulls to show: running ones first, then finished ones, newest request last
 * within each group (insertion order).
 */
export function visiblePulls(pulls: Readonly<Record<string, IPull>>): IPull[] {
  const all = Object.values(pulls);
  return [
    ...all.filter(p => !isFinished(p)),
    ...all.filter(p => isFinished(p))
  ];
}

/**
 * Split a Server-Sent Events buffer into complete events and the incomplete
 * rest. Each event's `data:` lines are joined and parsed as JSON; comments and
 * other fields are ignored.
 */
export function parseEventStream(buffer: string): {
  events: IPull[];
  rest: string;
} {
  const normalised = buffer.replace(/\r\n?/g, '\n');
  const blocks = normalised.split('\n\n');
  const rest = blocks.pop() ?? '';
  const events: IPull[] = [];
  for (const block of blocks) {
    const data = block
      .split('\n')
      .filter(line => line.startsWith('data:'))
      .map(line => line.slice(5).replace(/^ /, ''))
      .join('\n');
    if (data) {
      events.push(JSON.parse(data) as IPull);
    }
  }
  return { events, rest };
}

/**
 * What `followPull` needs of the API.
 */
export interface IPullSource {
  pull(id: string): Promise<IPull>;
  pullEvents(id: string): Promise<Response>;
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

/**
 * Follow a pull until it ends: its Server-Sent Events while the stream works,
 * else polling `pulls/ID`. Calls `onUpdate` with each state; resolves with
 * the final one.
 */
export async function followPull(
  source: IPullSource,
  id: string,
  onUpdate: (pull: IPull) => void,
  pollMs = 300
): Promise<IPull> {
  let last: IPull | null = null;
  try {
    const response = await source.pullEvents(id);
    if (response.ok && response.body) {
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) {
          break;
        }
        buffer += decoder.decode(value, { stream: true });
        const parsed = parseEventStream(buffer);
        buffer = parsed.rest;
        for (const event of parsed.events) {
          last = event;
          onUpdate(event);
        }
      }
    }
  } catch (error) {
    console.warn('dsdata: pull event stream failed, polling instead', error);
  }
  while (!last || !isFinished(last)) {
    if (last) {
      await sleep(pollMs);
    }
    last = await source.pull(id);
    onUpdate(last);
  }
  return last;
}
