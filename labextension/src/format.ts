/**
 * Pure formatting of what the panels show.
 */
import type { IModelEvent, IPromotion, IPulledPath } from './api';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/**
 * `1536` -> `1.5 KiB`; unknown sizes are an em dash.
 */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) {
    return '—';
  }
  let value = Math.max(0, bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0
    ? `${value} B`
    : `${value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

/**
 * The first characters of a git sha (or `—` when there is none).
 */
export function shortSha(sha: string | null | undefined, length = 10): string {
  return sha ? sha.slice(0, length) : '—';
}

/**
 * A metric value with at most 4 significant digits; integers as they are.
 */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) {
    return String(value);
  }
  if (Number.isInteger(value)) {
    return String(value);
  }
  return String(Number(value.toPrecision(4)));
}

/**
 * `{auc: 0.91234, loss: 0.2}` -> `auc=0.9123 loss=0.2` (keys sorted).
 */
export function formatMetrics(metrics: Record<string, number>): string {
  return Object.keys(metrics)
    .sort()
    .map(key => `${key}=${formatNumber(metrics[key])}`)
    .join(' ');
}

/**
 * Run tags `dsdata.dataset.NAME = VERSION@REV` -> `iris@v1.1.0` (names sorted).
 */
export function formatDatasets(datasets: Record<string, string>): string {
  return Object.keys(datasets)
    .sort()
    .map(name => `${name}@${datasets[name].split('@')[0]}`)
    .join(' ');
}

/**
 * An ISO time relative to `now`: `just now`, `5 min ago`, `3 h ago`, else the
 * date and time (UTC, minutes).
 */
export function formatWhen(iso: string, now: Date = new Date()): string {
  const time = new Date(iso);
  if (Number.isNaN(time.getTime())) {
    return iso;
  }
  const seconds = (now.getTime() - time.getTime()) / 1000;
  if (seconds >= 0 && seconds < 60) {
    return 'just now';
  }
  if (seconds >= 0 && seconds < 3600) {
    return `${Math.floor(seconds / 60)} min ago`;
  }
  if (seconds >= 0 && seconds < 86400) {
    return `${Math.floor(seconds / 3600)} h ago`;
  }
  return `${time.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/**
 * What a pulled path's state says to a user.
 */
export function stateLabel(
  row: Pick<IPulledPath, 'state' | 'changed'>
): string {
  switch (row.state) {
    case 'modified': {
      const n = row.changed.length;
      return n ? `modified (${n} file${n === 1 ? '' : 's'})` : 'modified';
    }
    case 'missing':
      return 'missing (deleted since the pull)';
    case 'unknown':
      return 'unknown (no snapshot)';
    default:
      return 'unchanged';
  }
}

/**
 * A promotion history event in one line, e.g.
 * `rita approved production v1 → v2 (looks good)`.
 */
export function describeEvent(event: IModelEvent): string {
  const from = event.from_version ? `v${event.from_version}` : 'none';
  const to = event.to_version ? `v${event.to_version}` : 'none';
  const verb =
    event.event === 'requested'
      ? 'asked for'
      : event.event === 'rollback'
        ? 'rolled back'
        : event.event;
  const note = event.note ? ` (${event.note})` : '';
  return `${event.actor} ${verb} ${event.alias} ${from} → ${to}${note}`;
}

/**
 * A pending promotion, e.g. `v3 → production by alice · gates: lineage failed`.
 */
export function describePending(promotion: IPromotion): string {
  const failed = promotion.gates.filter(g => !g.passed).map(g => g.name);
  const gates = failed.length
    ? `gates: ${failed.join(', ')} failed`
    : 'gates passed';
  return `v${promotion.version} → ${promotion.alias} by ${promotion.requester} · ${gates}`;
}
