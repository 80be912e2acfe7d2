// From historyEvents (GET instances/{id}?showHistory=true&showHistoryOutput=true) to timeline bars.
//
// The API merges a TaskScheduled into its TaskCompleted/TaskFailed (FunctionName, ScheduledTime, Input)
// and a SubOrchestrationInstanceCreated into its Completed/Failed event; one still listed on its own
// has no result yet. A timer is a TimerCreated and the TimerFired with the same FireAt.

// Epoch milliseconds (with fractions) of an ISO time with any number of fractional digits (.NET sends 7).
export function parseTime(text) {
  if (!text) return null;
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$/.exec(String(text).trim());
  if (!match) {
    const parsed = Date.parse(text);
    return Number.isNaN(parsed) ? null : parsed;
  }
  const whole = Date.parse(match[1] + (match[3] || 'Z'));
  if (Number.isNaN(whole)) return null;
  return whole + (match[2] ? Number(`0.${match[2]}`) * 1000 : 0);
}

const KINDS = {
  TaskCompleted: ['activity', 'completed'],
  TaskFailed: ['activity', 'failed'],
  TaskScheduled: ['activity', 'running'],
  SubOrchestrationInstanceCompleted: ['suborchestration', 'completed'],
  SubOrchestrationInstanceFailed: ['suborchestration', 'failed'],
  SubOrchestrationInstanceCreated: ['suborchestration', 'running'],
};

// A JSON text the way the history holds inputs, as one comparable string.
export function canonical(value) {
  if (typeof value === 'string') {
    try { return JSON.stringify(JSON.parse(value)); } catch { return value; }
  }
  return JSON.stringify(value ?? null);
}

// { start, end, bars }: one bar per activity, sub-orchestration and timer, retries as separate bars.
// Times are epoch ms; `end` is null while a bar is still running (a pending timer has `fireAt`).
export function buildTimeline(events, now = Date.now()) {
  const bars = [];
  let start = null;
  let end = null;
  const timers = [];
  (events || []).forEach((ev, index) => {
    const at = parseTime(ev.Timestamp);
    if (ev.EventType === 'ExecutionStarted' && start === null) start = at;
    if (ev.EventType === 'ExecutionCompleted' || ev.EventType === 'ExecutionTerminated') end = at;
    const kind = KINDS[ev.EventType];
    if (kind) {
      const pending = kind[1] === 'running';
      bars.push({
        kind: kind[0],
        outcome: kind[1],
        name: ev.FunctionName || ev.Name || '?',
        start: pending ? at : parseTime(ev.ScheduledTime) ?? at,
        end: pending ? null : at,
        input: ev.Input,
        result: ev.Result,
        reason: ev.Reason,
        details: ev.Details,
        instanceId: ev.InstanceId || null,
        eventIndex: index,
      });
    } else if (ev.EventType === 'TimerCreated') {
      const bar = { kind: 'timer', outcome: 'waiting', name: 'timer', start: at, end: null, fireAt: parseTime(ev.FireAt), eventIndex: index };
      timers.push(bar);
      bars.push(bar);
    } else if (ev.EventType === 'TimerFired') {
      const fireAt = parseTime(ev.FireAt);
      const timer = timers.find((t) => t.end === null && t.fireAt === fireAt);
      if (timer) {
        timer.end = at;
        timer.outcome = 'fired';
      }
    }
  });
  // Attempts of the same call (same function and input) are retries: number them in start order.
  const attempts = new Map();
  for (const bar of [...bars].sort((a, b) => a.start - b.start)) {
    if (bar.kind === 'timer') continue;
    const key = `${bar.kind}\u0000${bar.name}\u0000${canonical(bar.input)}`;
    const seen = attempts.get(key) || [];
    seen.push(bar);
    attempts.set(key, seen);
    bar.attempt = seen.length;
  }
  for (const seen of attempts.values()) for (const bar of seen) bar.attempts = seen.length;
  // A timer started right after a failed attempt, fired just before the next one: the retry delay.
  for (const timer of bars.filter((b) => b.kind === 'timer')) {
    const next = bars.find((b) => b.kind !== 'timer' && b.attempt > 1 && timer.end !== null && Math.abs(b.start - timer.end) < 50);
    if (next) timer.name = `retry delay (${next.name})`;
  }
  bars.sort((a, b) => a.start - b.start || a.eventIndex - b.eventIndex);
  if (start === null) start = bars.length ? bars[0].start : now;
  const last = Math.max(start, ...bars.map((b) => b.end ?? Math.max(now, b.fireAt ?? 0)));
  return { start, end, bars, until: end ?? Math.max(last, now) };
}

// Human duration of `ms` milliseconds.
export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// Progress bars from a custom status: every numeric `x_done` with a numeric `x_total` (top level or
// one level down), e.g. {"images_done": 3, "images_total": 32} -> [{label: "images", done: 3, total: 32}].
export function progressOf(customStatus) {
  const found = [];
  const scan = (object, path) => {
    if (!object || typeof object !== 'object' || Array.isArray(object)) return;
    for (const [key, value] of Object.entries(object)) {
      const match = /^(.*)_done$/.exec(key);
      if (match && typeof value === 'number' && typeof object[`${match[1]}_total`] === 'number') {
        found.push({ label: path + match[1], done: value, total: object[`${match[1]}_total`] });
      } else if (value && typeof value === 'object' && !path) {
        scan(value, `${key}.`);
      }
    }
  };
  scan(customStatus, '');
  return found;
}
