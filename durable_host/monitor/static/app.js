// The monitor page: the instance list (#/) and one instance (#/instances/<id>), over the management API.

import { ApiError, ManagementClient, STATUSES, TERMINAL } from './api.js';
import { buildTimeline, canonical, formatDuration, parseTime, progressOf } from './timeline.js';
import { decodeJsonText, formatTime, h, payload, statusBadge } from './view.js';

const main = document.getElementById('main');
const announcer = document.getElementById('announcer');

const state = {
  client: null,
  filters: loadFilters(),
  tokens: [''], // continuation token of each page seen so far; tokens[page] fetches that page
  page: 0,
  next: '',
  selected: null,
  timer: null,
  ticker: null,
  view: null,
  action: 0, // bumped by each action, so a refresh scheduled by an earlier one never shows that one's result
};

// ------------------------------------------------------------------ connection (local host or Azure)

function connect() {
  const query = new URLSearchParams(window.location.search);
  const base = query.get('base') ?? sessionStorage.getItem('monitor.base') ?? '';
  // the stored key goes only to the stored origin: a link with another ?base= must not collect it
  const storedKey = query.has('base') && query.get('base') !== sessionStorage.getItem('monitor.base')
    ? '' : sessionStorage.getItem('monitor.code');
  const key = query.get('code') ?? storedKey ?? '';
  state.client = new ManagementClient(base, key);
  document.getElementById('origin').textContent = state.client.origin;
  const form = document.getElementById('connection-form');
  form.elements.base.value = base;
  form.elements.code.value = key;
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem('monitor.base', form.elements.base.value.trim());
    sessionStorage.setItem('monitor.code', form.elements.code.value.trim());
    const url = new URL(window.location.href);
    url.searchParams.delete('base');
    url.searchParams.delete('code');
    window.location.replace(url.toString());
  });
}

function announce(text) {
  announcer.textContent = text;
}

function stopTimers() {
  clearTimeout(state.timer);
  state.timer = null;
}

function scheduleRefresh(fn) {
  stopTimers();
  const auto = document.getElementById('auto-refresh');
  if (!auto || !auto.checked) return;
  state.timer = setTimeout(fn, Number(document.getElementById('refresh-interval').value) * 1000);
}

function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, err instanceof ApiError ? err.message : String(err));
}

// ------------------------------------------------------------------ instance list

function loadFilters() {
  try {
    return { runtimeStatus: [], showInput: false, top: 50, ...JSON.parse(sessionStorage.getItem('monitor.filters') || '{}') };
  } catch {
    return { runtimeStatus: [], showInput: false, top: 50 };
  }
}

function toIso(local) {
  if (!local) return '';
  const date = new Date(local);
  return Number.isNaN(date.getTime()) ? '' : date.toISOString();
}

function filterForm() {
  const f = state.filters;
  const input = (name, label, attrs = {}) =>
    h('label', { class: 'field' }, label, h('input', { name, id: `filter-${name}`, value: f[name] || '', ...attrs }));
  const form = h(
    'form',
    { id: 'filters', class: 'filters', 'aria-label': 'Filters' },
    h(
      'fieldset',
      { class: 'statuses' },
      h('legend', {}, 'Runtime status'),
      STATUSES.map((s) =>
        h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'runtimeStatus', value: s, checked: f.runtimeStatus.includes(s) }), s),
      ),
    ),
    input('instanceIdPrefix', 'Instance id prefix', { type: 'search', autocomplete: 'off' }),
    input('name', 'Name contains (this page)', { type: 'search', autocomplete: 'off' }),
    input('customStatus', 'Custom status contains (this page)', { type: 'search', autocomplete: 'off' }),
    input('createdTimeFrom', 'Created from', { type: 'datetime-local', step: '1' }),
    input('createdTimeTo', 'Created to', { type: 'datetime-local', step: '1' }),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'showInput', id: 'filter-showInput', checked: f.showInput }), 'Show input'),
    h(
      'label',
      { class: 'field' },
      'Page size',
      h('select', { name: 'top', id: 'filter-top' }, [10, 25, 50, 100, 500].map((n) => h('option', { value: n, selected: Number(f.top) === n }, n))),
    ),
    h('div', { class: 'buttons' }, h('button', { type: 'submit', id: 'apply-filters' }, 'Apply'), h('button', { type: 'button', id: 'clear-filters' }, 'Clear')),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const data = new FormData(form);
    state.filters = {
      runtimeStatus: data.getAll('runtimeStatus'),
      instanceIdPrefix: data.get('instanceIdPrefix').trim(),
      name: data.get('name').trim(),
      customStatus: data.get('customStatus').trim(),
      createdTimeFrom: data.get('createdTimeFrom'),
      createdTimeTo: data.get('createdTimeTo'),
      showInput: data.get('showInput') !== null,
      top: Number(data.get('top')),
    };
    sessionStorage.setItem('monitor.filters', JSON.stringify(state.filters));
    state.tokens = [''];
    state.page = 0;
    refreshList({ announceIt: true });
  });
  form.querySelector('#clear-filters').addEventListener('click', () => {
    state.filters = { runtimeStatus: [], showInput: false, top: state.filters.top };
    sessionStorage.setItem('monitor.filters', JSON.stringify(state.filters));
    state.tokens = ['']; // the old page's continuation token means nothing to the new query
    state.page = 0;
    showList();
  });
  return form;
}

function apiFilters(filters) {
  return {
    runtimeStatus: filters.runtimeStatus,
    instanceIdPrefix: filters.instanceIdPrefix,
    createdTimeFrom: toIso(filters.createdTimeFrom),
    createdTimeTo: toIso(filters.createdTimeTo),
    showInput: filters.showInput,
    top: filters.top,
  };
}

function refreshControls(onRefresh) {
  const saved = sessionStorage.getItem('monitor.auto') !== '0';
  const auto = h('input', { type: 'checkbox', id: 'auto-refresh', checked: saved });
  const interval = h(
    'select',
    { id: 'refresh-interval', 'aria-label': 'Refresh interval' },
    [2, 5, 10, 30].map((s) => h('option', { value: s, selected: s === Number(sessionStorage.getItem('monitor.interval') || 5) }, `${s} s`)),
  );
  auto.addEventListener('change', () => {
    sessionStorage.setItem('monitor.auto', auto.checked ? '1' : '0');
    if (auto.checked) onRefresh();
    else stopTimers();
  });
  interval.addEventListener('change', () => sessionStorage.setItem('monitor.interval', interval.value));
  return h(
    'div',
    { class: 'toolbar' },
    h('label', { class: 'check' }, auto, 'Auto-refresh every'),
    interval,
    h('button', { type: 'button', id: 'refresh-now', onclick: () => onRefresh() }, 'Refresh now'),
    h('span', { id: 'last-refresh', class: 'muted' }),
  );
}

function showList() {
  stopTimers();
  state.view = 'list';
  document.title = 'Orchestrations · Durable Functions monitor';
  main.replaceChildren(
    h('h2', { id: 'list-title' }, 'Orchestration instances'),
    filterForm(),
    refreshControls(() => refreshList()),
    h('ul', { id: 'counts', class: 'counts', 'aria-label': 'Instances by runtime status' }),
    h('div', { id: 'list-error' }),
    h(
      'table',
      { id: 'instances', class: 'instances', 'aria-labelledby': 'list-title' },
      h('thead', {}, h('tr', {}, ['Instance id', 'Name', 'Status', 'Created', 'Last updated', 'Custom status', 'Input'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', { id: 'instance-rows' }),
    ),
    h(
      'nav',
      { class: 'pager', 'aria-label': 'Pages' },
      h('button', { type: 'button', id: 'prev-page', onclick: () => goPage(-1) }, '← Previous'),
      h('span', { id: 'page-label' }),
      h('button', { type: 'button', id: 'next-page', onclick: () => goPage(1) }, 'Next →'),
    ),
  );
  refreshList();
}

function goPage(delta) {
  if (delta > 0 && state.next) {
    state.tokens[state.page + 1] = state.next;
    state.page += 1;
  } else if (delta < 0 && state.page > 0) {
    state.page -= 1;
  } else return;
  refreshList({ announceIt: true });
}

function matchesLocal(item, filters) {
  if (filters.name && !String(item.name || '').toLowerCase().includes(filters.name.toLowerCase())) return false;
  if (filters.customStatus && !JSON.stringify(item.customStatus ?? '').toLowerCase().includes(filters.customStatus.toLowerCase())) return false;
  return true;
}

function progressText(customStatus) {
  const bars = progressOf(customStatus);
  if (bars.length) return bars.map((b) => `${b.label} ${b.done}/${b.total}`).join(' · ');
  if (customStatus === null || customStatus === undefined) return '';
  const text = typeof customStatus === 'string' ? customStatus : JSON.stringify(customStatus);
  return text.length > 80 ? text.slice(0, 80) + '…' : text;
}

function instanceRow(item) {
  const id = item.instanceId;
  const selected = id === state.selected;
  const link = h('a', { href: `#/instances/${encodeURIComponent(id)}`, class: 'instance-link' }, id);
  const row = h(
    'tr',
    { dataset: { id, status: item.runtimeStatus }, class: selected ? 'selected' : '', 'aria-selected': selected ? 'true' : 'false' },
    h('td', {}, link),
    h('td', {}, item.name),
    h('td', {}, statusBadge(item.runtimeStatus)),
    h('td', {}, formatTime(parseTime(item.createdTime))),
    h('td', {}, formatTime(parseTime(item.lastUpdatedTime))),
    h('td', { class: 'custom-status' }, progressText(item.customStatus)),
    h('td', {}, state.filters.showInput ? payload(item.input, { label: 'input' }) : h('span', { class: 'muted' }, '—')),
  );
  const select = () => {
    state.selected = id;
    for (const other of document.querySelectorAll('#instance-rows tr.selected')) {
      other.classList.remove('selected');
      other.setAttribute('aria-selected', 'false');
    }
    row.classList.add('selected');
    row.setAttribute('aria-selected', 'true');
  };
  row.addEventListener('click', select);
  link.addEventListener('focus', select);
  link.addEventListener('keydown', (event) => {
    const sibling = event.key === 'ArrowDown' ? row.nextElementSibling : event.key === 'ArrowUp' ? row.previousElementSibling : null;
    if (sibling) {
      event.preventDefault();
      sibling.querySelector('a').focus();
    }
  });
  return row;
}

async function refreshList({ announceIt = false } = {}) {
  const filters = state.filters;
  const listError = document.getElementById('list-error');
  try {
    const query = apiFilters(filters);
    const [page, everything] = await Promise.all([
      state.client.list(query, state.tokens[state.page]),
      state.client.all({ ...query, runtimeStatus: [] }),
    ]);
    if (state.view !== 'list') return;
    const rows = document.getElementById('instance-rows');
    const focusedId = rows.contains(document.activeElement) ? document.activeElement.closest('tr')?.dataset.id : null;
    const scroll = [window.scrollX, window.scrollY];
    const openPayloads = new Set([...rows.querySelectorAll('details[open]')].map((d) => d.closest('tr').dataset.id));
    const items = page.items.filter((item) => matchesLocal(item, filters));
    items.sort((a, b) => String(b.createdTime).localeCompare(String(a.createdTime)) || String(a.instanceId).localeCompare(String(b.instanceId)));
    const fresh = items.map(instanceRow);
    if (!fresh.length) fresh.push(h('tr', {}, h('td', { colspan: '7', class: 'muted empty' }, 'No instances match these filters.')));
    rows.replaceChildren(...fresh);
    for (const row of rows.querySelectorAll('tr[data-id]')) {
      if (openPayloads.has(row.dataset.id)) row.querySelector('details')?.setAttribute('open', '');
    }
    if (focusedId) rows.querySelector(`tr[data-id="${CSS.escape(focusedId)}"] a`)?.focus({ preventScroll: true });
    window.scrollTo(scroll[0], scroll[1]);
    state.next = page.next;
    renderCounts(everything.items.filter((item) => matchesLocal(item, filters)), everything.complete);
    document.getElementById('prev-page').disabled = state.page === 0;
    document.getElementById('next-page').disabled = !page.next;
    document.getElementById('page-label').textContent = `Page ${state.page + 1} · ${items.length} shown`;
    document.getElementById('last-refresh').textContent = `updated ${new Date().toLocaleTimeString()}`;
    listError.replaceChildren();
    if (announceIt) announce(`${items.length} instances shown, page ${state.page + 1}`);
  } catch (err) {
    listError.replaceChildren(errorBox(err));
  }
  if (state.view === 'list') scheduleRefresh(() => refreshList());
}

function renderCounts(items, complete) {
  const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const item of items) counts[item.runtimeStatus] = (counts[item.runtimeStatus] || 0) + 1;
  const list = document.getElementById('counts');
  const active = new Set(state.filters.runtimeStatus);
  list.replaceChildren(
    h('li', {}, h('span', { class: 'count-total' }, `${complete ? '' : '≥ '}${items.length} total`)),
    ...STATUSES.filter((s) => counts[s] || active.has(s)).map((s) =>
      h(
        'li',
        {},
        h(
          'button',
          {
            type: 'button',
            class: `count status-${s.toLowerCase()}`,
            dataset: { status: s, count: counts[s] },
            'aria-pressed': active.has(s) ? 'true' : 'false',
            title: `Show only ${s} instances`,
            onclick: () => {
              state.filters = { ...state.filters, runtimeStatus: active.has(s) && active.size === 1 ? [] : [s] };
              sessionStorage.setItem('monitor.filters', JSON.stringify(state.filters));
              state.tokens = [''];
              state.page = 0;
              showList();
            },
          },
          `${s} `,
          h('b', {}, counts[s]),
        ),
      ),
    ),
  );
}

// ------------------------------------------------------------------ one instance

const ACTIONS = [
  { op: 'terminate', label: 'Terminate', when: (s) => !TERMINAL.has(s), reason: true },
  { op: 'suspend', label: 'Suspend', when: (s) => s === 'Running' || s === 'Pending', reason: true },
  { op: 'resume', label: 'Resume', when: (s) => s === 'Suspended', reason: true },
  { op: 'rewind', label: 'Rewind', when: (s) => s === 'Failed', reason: true },
  { op: 'restart', label: 'Restart', when: () => true },
  { op: 'raise', label: 'Raise event', when: (s) => !TERMINAL.has(s) },
  { op: 'purge', label: 'Purge history', when: (s) => TERMINAL.has(s), danger: true },
];

async function showInstance(id) {
  stopTimers();
  state.view = `instance:${id}`;
  state.selected = id;
  document.title = `${id} · Durable Functions monitor`;
  main.replaceChildren(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/', id: 'back-to-list' }, '← All instances')),
    h('h2', { id: 'instance-title' }, 'Instance ', h('code', {}, id)),
    refreshControls(() => loadInstance(id)),
    h('div', { id: 'instance-body' }, h('p', { class: 'muted' }, 'Loading…')),
  );
  main.focus({ preventScroll: true });
  await loadInstance(id);
}

// Every collapsed payload of the instance view under a key that survives a re-render: where it sits (the
// element with an id, the history row or the list item around it), its label and its place among the
// payloads there, so one opened by the user stays open when the view refreshes.
function detailsByKey(root) {
  const seen = new Map();
  return [...root.querySelectorAll('details')].map((d) => {
    const place = d.parentElement.closest('[id], tr[data-index], li');
    const label = d.querySelector('.payload-size')?.textContent.split(' · ')[0] || '';
    const where = place?.id || (place?.dataset.index !== undefined ? `event ${place.dataset.index}` : place?.tagName);
    const base = `${where}|${label}`;
    const n = (seen.get(base) || 0) + 1;
    seen.set(base, n);
    return [`${base}|${n}`, d];
  });
}

async function loadInstance(id, { force = false } = {}) {
  const view = `instance:${id}`;
  const body = document.getElementById('instance-body');
  let status;
  try {
    status = await state.client.status(id);
  } catch (err) {
    if (state.view !== view) return;
    body.replaceChildren(errorBox(err), h('p', {}, h('a', { href: '#/' }, 'Back to the instance list')));
    delete body.dataset.signature; // the next answer is drawn whatever it is
    // a host restarting, a 503, a session task whose instance does not exist yet: try again, as the list does
    scheduleRefresh(() => loadInstance(id));
    return;
  }
  if (state.view !== view) return;
  const signature = `${status.runtimeStatus}|${status.lastUpdatedTime}|${(status.historyEvents || []).length}|${JSON.stringify(status.customStatus)}`;
  if (force || body.dataset.signature !== signature) {
    const scroll = [window.scrollX, window.scrollY];
    const search = document.getElementById('history-search')?.value || '';
    const open = new Set([...detailsByKey(body)].filter(([, d]) => d.open).map(([key]) => key));
    body.replaceChildren(...renderInstance(status));
    body.dataset.signature = signature;
    for (const [key, d] of detailsByKey(body)) {
      if (!open.has(key)) continue;
      d.open = true;
      // filled now, not on the (asynchronous) toggle event: the scroll position restored below needs its height
      d.dispatchEvent(new Event('toggle'));
    }
    if (search) {
      document.getElementById('history-search').value = search;
      filterHistory(search);
    }
    window.scrollTo(scroll[0], scroll[1]);
    resolveSubOrchestrations(status);
  }
  tick();
  scheduleRefresh(() => loadInstance(id)); // finished ones too: another client may rewind or restart it
}

function section(id, title, ...children) {
  return h('section', { id, 'aria-labelledby': `${id}-title`, class: 'panel' }, h('h3', { id: `${id}-title` }, title), ...children);
}

function renderInstance(status) {
  const events = status.historyEvents || [];
  const timeline = buildTimeline(events);
  const created = parseTime(status.createdTime);
  const running = !TERMINAL.has(status.runtimeStatus);
  const duration = timeline.end !== null ? timeline.end - timeline.start : null;
  const facts = h(
    'dl',
    { class: 'facts' },
    h('dt', {}, 'Name'), h('dd', { id: 'instance-name' }, status.name),
    h('dt', {}, 'Status'), h('dd', { id: 'instance-status' }, statusBadge(status.runtimeStatus)),
    h('dt', {}, 'Created'), h('dd', {}, formatTime(created)),
    h('dt', {}, 'Last updated'), h('dd', {}, formatTime(parseTime(status.lastUpdatedTime))),
    h('dt', {}, running ? 'Running for' : 'Duration'),
    h('dd', running ? { dataset: { liveFrom: timeline.start } } : {}, formatDuration(running ? Date.now() - timeline.start : duration)),
    status.version ? [h('dt', {}, 'Version'), h('dd', {}, status.version)] : null,
  );
  const parts = [h('div', { class: 'summary' }, facts, actionBar(status)), h('div', { id: 'action-result', role: 'status', 'aria-live': 'polite' })];
  const progress = progressOf(status.customStatus);
  if (status.customStatus !== null && status.customStatus !== undefined) {
    parts.push(
      section(
        'custom-status',
        'Custom status',
        progress.map((p) =>
          h(
            'div',
            { class: 'progress-row' },
            h('label', { for: `progress-${p.label}` }, `${p.label}: ${p.done} / ${p.total}`),
            h('progress', { id: `progress-${p.label}`, max: p.total || 1, value: p.done }),
          ),
        ),
        payload(status.customStatus, { label: 'custom status', decode: false }),
      ),
    );
  }
  const io = section('io', 'Input and output', h('dl', { class: 'io' }, h('dt', {}, 'Input'), h('dd', { id: 'instance-input' }, payload(status.input, { label: 'input' })), h('dt', {}, 'Output'), h('dd', { id: 'instance-output' }, payload(status.output, { label: 'output', decode: false }))));
  parts.push(io);
  if (status.runtimeStatus === 'Failed') parts.push(failureSection(status, timeline));
  parts.push(section('timeline', `Timeline (${timeline.bars.length} bars)`, gantt(timeline, status)));
  const subs = timeline.bars.filter((b) => b.kind === 'suborchestration');
  if (subs.length) {
    parts.push(
      section(
        'suborchestrations',
        `Sub-orchestrations (${subs.length})`,
        h(
          'ul',
          { class: 'subs' },
          subs.map((b) => h('li', { dataset: { index: b.eventIndex } }, subLink(b), ' ', statusBadge(b.outcome), ' ', formatDuration(b.end !== null ? b.end - b.start : null))),
        ),
      ),
    );
  }
  parts.push(historySection(events, timeline));
  return parts;
}

function failureSection(status, timeline) {
  const failed = timeline.bars.filter((b) => b.outcome === 'failed');
  const completion = [...(status.historyEvents || [])].reverse().find((e) => e.EventType === 'ExecutionCompleted');
  return section(
    'failure',
    'Failure',
    h('p', { class: 'error', id: 'failure-message' }, typeof status.output === 'string' ? status.output : JSON.stringify(status.output)),
    completion?.FailureDetails ? payload(completion.FailureDetails, { label: 'failure details' }) : null,
    failed.length
      ? h(
          'ul',
          { class: 'failed-tasks' },
          failed.map((b) => h('li', {}, h('strong', {}, b.name), b.attempts > 1 ? ` (attempt ${b.attempt} of ${b.attempts})` : '', ': ', b.reason || '', ' ', b.details ? payload(b.details, { label: 'details' }) : null)),
        )
      : null,
  );
}

function subLink(bar) {
  const label = `${bar.name}${bar.attempts > 1 ? ` (attempt ${bar.attempt})` : ''}`;
  if (bar.instanceId) return h('a', { href: `#/instances/${encodeURIComponent(bar.instanceId)}`, class: 'sub-link', dataset: { index: bar.eventIndex } }, label);
  return h('span', { class: 'sub-link pending', dataset: { index: bar.eventIndex } }, label);
}

// Merged sub-orchestration events do not name their child: find it with one list query (name, input
// and creation time), which works against any host since it is the documented API.
async function resolveSubOrchestrations(status) {
  const timeline = buildTimeline(status.historyEvents || []);
  const unresolved = timeline.bars.filter((b) => b.kind === 'suborchestration' && !b.instanceId);
  if (!unresolved.length) return;
  const from = Math.min(...unresolved.map((b) => b.start)) - 2000;
  const to = Math.max(...unresolved.map((b) => b.end ?? Date.now())) + 2000;
  let candidates = [];
  try {
    let token = '';
    do {
      const page = await state.client.list({ createdTimeFrom: new Date(from).toISOString(), createdTimeTo: new Date(to).toISOString(), showInput: true, top: 500 }, token);
      candidates.push(...page.items);
      token = page.next;
    } while (token && candidates.length < 5000);
  } catch {
    return;
  }
  candidates = candidates.filter((c) => c.instanceId !== status.instanceId).sort((a, b) => String(a.createdTime).localeCompare(String(b.createdTime)));
  const used = new Set();
  for (const bar of unresolved) {
    const match = candidates.find((c) => {
      if (used.has(c.instanceId) || c.name !== bar.name) return false;
      const created = parseTime(c.createdTime);
      if (created < Math.floor(bar.start / 1000) * 1000 - 1000 || created > (bar.end ?? Date.now()) + 1000) return false;
      return canonical(c.input) === canonical(bar.input) || canonical(decodeJsonText(c.input)) === canonical(bar.input);
    });
    if (!match) continue;
    used.add(match.instanceId);
    for (const el of document.querySelectorAll(`.sub-link[data-index="${bar.eventIndex}"]`)) {
      const link = h('a', { href: `#/instances/${encodeURIComponent(match.instanceId)}`, class: 'sub-link', dataset: { index: bar.eventIndex, instance: match.instanceId } }, el.textContent);
      el.replaceWith(link);
    }
  }
}

function gantt(timeline, status) {
  const span = Math.max(timeline.until - timeline.start, 1);
  const pct = (t) => `${(((t - timeline.start) / span) * 100).toFixed(3)}%`;
  const width = (a, b) => `${Math.max(((b - a) / span) * 100, 0.15).toFixed(3)}%`;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => h('span', { class: 'tick', style: { left: `${f * 100}%` } }, `+${formatDuration(f * span)}`));
  const row = (bar, label, extra = {}) => {
    const end = bar.end ?? (bar.kind === 'timer' && bar.fireAt ? Math.max(bar.fireAt, bar.start) : Date.now());
    const duration = bar.end !== null ? bar.end - bar.start : null;
    const when = `${formatTime(bar.start)} → ${bar.end !== null ? formatTime(bar.end) : 'now'}`;
    const text = bar.end !== null ? formatDuration(duration) : bar.kind === 'timer' ? `fires at ${formatTime(bar.fireAt)}` : 'running';
    const live = bar.end !== null ? {} : bar.kind === 'timer' ? { liveUntil: bar.fireAt } : { liveFrom: bar.start };
    return h(
      'li',
      {
        class: `gantt-row kind-${bar.kind} outcome-${bar.outcome}${bar.attempt > 1 ? ' retry' : ''}`,
        dataset: { kind: bar.kind, outcome: bar.outcome, name: bar.name, start: bar.start, end: bar.end ?? '', attempt: bar.attempt ?? '', ...extra },
      },
      h('span', { class: 'gantt-label' }, label),
      h(
        'span',
        { class: 'gantt-track' },
        h('span', { class: 'gantt-bar', style: { left: pct(bar.start), width: width(bar.start, end) }, title: `${bar.name}: ${when} (${text})` }),
      ),
      h('span', { class: 'gantt-duration', dataset: live }, text),
      h('span', { class: 'sr-only' }, `${bar.outcome}, ${when}`),
    );
  };
  const orchestration = { kind: 'orchestration', outcome: String(status.runtimeStatus).toLowerCase(), name: status.name, start: timeline.start, end: timeline.end };
  const rows = [row(orchestration, h('strong', {}, status.name))];
  for (const bar of timeline.bars) {
    const label = bar.kind === 'suborchestration' ? subLink(bar) : [bar.name, bar.attempts > 1 ? h('small', {}, ` attempt ${bar.attempt}/${bar.attempts}`) : null];
    rows.push(row(bar, label, { index: bar.eventIndex }));
  }
  return h(
    'div',
    { class: 'gantt-wrap' },
    h('div', { class: 'legend', 'aria-hidden': 'true' }, ['activity', 'suborchestration', 'timer', 'failed', 'running'].map((k) => h('span', { class: `legend-${k}` }, k))),
    h('div', { class: 'gantt-axis', 'aria-hidden': 'true' }, h('span', { class: 'gantt-label' }), h('span', { class: 'gantt-track' }, ticks), h('span', { class: 'gantt-duration' })),
    h('ol', { class: 'gantt', id: 'gantt', 'aria-label': `Timeline of ${status.name}: ${timeline.bars.length} activities, sub-orchestrations and timers`, tabindex: '0' }, rows),
  );
}

function historySection(events, timeline) {
  const start = timeline.start;
  const search = h('input', { type: 'search', id: 'history-search', placeholder: 'event, name, input, result…', autocomplete: 'off' });
  const counter = h('span', { id: 'history-count', class: 'muted', 'aria-live': 'polite' }, `${events.length} events`);
  search.addEventListener('input', () => filterHistory(search.value));
  const rows = events.map((ev, index) => {
    const at = parseTime(ev.Timestamp);
    const scheduled = parseTime(ev.ScheduledTime);
    const detail = [];
    if (ev.Input !== undefined && ev.Input !== null) detail.push(h('div', {}, h('span', { class: 'key' }, 'input '), payload(ev.Input, { label: 'input' })));
    if (ev.Result !== undefined) detail.push(h('div', {}, h('span', { class: 'key' }, 'result '), payload(ev.Result, { label: 'result', decode: false })));
    if (ev.Reason) detail.push(h('div', { class: 'error' }, h('span', { class: 'key' }, 'reason '), payload(ev.Reason, { label: 'reason', decode: false })));
    if (ev.Details) detail.push(h('div', {}, h('span', { class: 'key' }, 'details '), payload(ev.Details, { label: 'details' })));
    if (ev.FireAt) detail.push(h('div', {}, h('span', { class: 'key' }, 'fire at '), formatTime(parseTime(ev.FireAt))));
    if (ev.InstanceId) detail.push(h('div', {}, h('span', { class: 'key' }, 'instance '), h('a', { href: `#/instances/${encodeURIComponent(ev.InstanceId)}` }, ev.InstanceId)));
    if (ev.OrchestrationStatus) detail.push(h('div', {}, h('span', { class: 'key' }, 'status '), ev.OrchestrationStatus));
    const tr = h(
      'tr',
      { dataset: { index, type: ev.EventType } },
      h('td', { class: 'num' }, index + 1),
      h('td', { class: 'time' }, formatTime(at)),
      h('td', { class: 'num' }, `+${formatDuration(at - start)}`),
      h('td', {}, ev.EventType),
      h('td', {}, ev.FunctionName || ev.Name || ''),
      h('td', { class: 'num' }, scheduled !== null ? formatDuration(at - scheduled) : ''),
      h('td', { class: 'detail' }, detail),
    );
    tr.searchText = null;
    tr.event = ev;
    return tr;
  });
  return section(
    'history',
    'History',
    h('div', { class: 'toolbar' }, h('label', { for: 'history-search' }, 'Search history'), search, counter),
    h(
      'table',
      { class: 'history', id: 'history-table', 'aria-labelledby': 'history-title' },
      h('thead', {}, h('tr', {}, ['#', 'Timestamp', 'Since start', 'Event', 'Name', 'Duration', 'Details'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', { id: 'history-rows' }, rows),
    ),
  );
}

function filterHistory(query) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  let shown = 0;
  const rows = document.querySelectorAll('#history-rows tr');
  for (const tr of rows) {
    if (tr.searchText === null || tr.searchText === undefined) tr.searchText = JSON.stringify(tr.event).toLowerCase();
    const visible = words.every((w) => tr.searchText.includes(w));
    tr.hidden = !visible;
    if (visible) shown += 1;
  }
  document.getElementById('history-count').textContent = words.length ? `${shown} of ${rows.length} events` : `${rows.length} events`;
}

// ------------------------------------------------------------------ actions

function actionBar(status) {
  return h(
    'div',
    { class: 'actions', role: 'group', 'aria-label': 'Actions' },
    ACTIONS.map((a) =>
      h(
        'button',
        {
          type: 'button',
          id: `action-${a.op}`,
          class: a.danger ? 'danger' : '',
          disabled: !a.when(status.runtimeStatus),
          onclick: () => confirmAction(a, status),
        },
        a.label,
      ),
    ),
  );
}

function confirmAction(action, status) {
  const dialog = document.getElementById('confirm');
  const fields = [];
  if (action.reason) fields.push(h('label', { class: 'field' }, 'Reason', h('input', { name: 'reason', id: 'confirm-reason', value: `${action.label.toLowerCase()} from the monitor page` })));
  if (action.op === 'restart') fields.push(h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'newId', id: 'confirm-new-id', checked: true }), 'With a new instance id'));
  if (action.op === 'raise') {
    fields.push(h('label', { class: 'field' }, 'Event name', h('input', { name: 'event', id: 'confirm-event', required: true })));
    fields.push(h('label', { class: 'field' }, 'Event data (JSON)', h('textarea', { name: 'data', id: 'confirm-data', rows: '4' }, 'null')));
  }
  const warning =
    action.op === 'purge'
      ? 'This deletes the instance and its history from the task hub. It cannot be undone.'
      : `${action.label} instance ${status.instanceId} (${status.name}, ${status.runtimeStatus})?`;
  const error = h('p', { class: 'error', id: 'confirm-error', role: 'alert' });
  const form = h(
    'form',
    { method: 'dialog' },
    h('h2', { id: 'confirm-title' }, `${action.label}?`),
    h('p', {}, warning),
    fields,
    error,
    h('div', { class: 'buttons' }, h('button', { value: 'cancel', id: 'confirm-cancel', formnovalidate: true }, 'Cancel'), h('button', { value: 'confirm', id: 'confirm-ok', class: action.danger ? 'danger' : 'primary' }, action.label)),
  );
  form.addEventListener('submit', (event) => {
    if (event.submitter?.value !== 'confirm') return;
    if (action.op === 'raise') {
      try {
        JSON.parse(form.elements.data.value || 'null');
      } catch (err) {
        event.preventDefault();
        error.textContent = `Event data is not JSON: ${err.message}`;
      }
    }
  });
  dialog.replaceChildren(form);
  dialog.setAttribute('aria-labelledby', 'confirm-title');
  dialog.onclose = () => {
    if (dialog.returnValue === 'confirm') runAction(action, status, new FormData(form));
    document.getElementById(`action-${action.op}`)?.focus();
  };
  dialog.returnValue = '';
  dialog.showModal();
  (form.querySelector('input, textarea') || form.querySelector('#confirm-cancel')).focus();
}

async function runAction(action, status, data) {
  const id = status.instanceId;
  const seq = ++state.action;
  // The page may be re-rendered while the request is out: always write to the result element shown now.
  const current = () => document.getElementById('action-result');
  const show = (ok, ...text) => {
    const out = current();
    out.className = ok ? 'result ok' : 'result error';
    out.replaceChildren(...text);
  };
  show(true, `${action.label}…`);
  try {
    let answer;
    if (action.op === 'restart') {
      answer = await state.client.restart(id, data.get('newId') !== null);
      const newId = answer.data?.id || id;
      show(true, `Restart accepted (HTTP ${answer.status}): `, h('a', { href: `#/instances/${encodeURIComponent(newId)}`, id: 'restarted-link' }, newId));
    } else if (action.op === 'raise') {
      answer = await state.client.raiseEvent(id, data.get('event'), JSON.parse(data.get('data') || 'null'));
      show(true, `Event '${data.get('event')}' raised (HTTP ${answer.status}).`);
    } else if (action.op === 'purge') {
      answer = await state.client.purge(id);
      show(true, `Purged (HTTP ${answer.status}): ${answer.data?.instancesDeleted ?? 0} instance(s) deleted. `, h('a', { href: '#/' }, 'Back to the list'));
      stopTimers();
      state.view = `purged:${id}`;
      for (const button of document.querySelectorAll('.actions button')) button.disabled = true;
      announce(current().textContent);
      return;
    } else {
      answer = await state.client.control(id, action.op, data.get('reason'));
      show(true, `${action.label} requested (HTTP ${answer.status}).`);
    }
    announce(current().textContent);
    setTimeout(() => refreshAfterAction(id, seq), 400);
  } catch (err) {
    show(false, `${action.label} refused: ${err instanceof ApiError ? err.message : String(err)}`);
    announce(current().textContent);
  }
}

// Re-reads the instance after an action and keeps its result on the re-rendered page, unless another action
// started meanwhile: that one's result is the one to show (and it schedules its own refresh).
async function refreshAfterAction(id, seq) {
  if (state.view !== `instance:${id}` || seq !== state.action) return;
  const before = document.getElementById('action-result');
  const kept = [...before.childNodes];
  const className = before.className;
  await loadInstance(id, { force: true });
  if (seq !== state.action) return;
  const fresh = document.getElementById('action-result');
  fresh.className = className;
  fresh.replaceChildren(...kept);
}

// ------------------------------------------------------------------ live times and routing

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll('[data-live-from]')) el.textContent = `running ${formatDuration(now - Number(el.dataset.liveFrom))}`;
  for (const el of document.querySelectorAll('[data-live-until]')) {
    const left = Number(el.dataset.liveUntil) - now;
    el.textContent = left > 0 ? `fires in ${formatDuration(left)}` : `due ${formatDuration(-left)} ago`;
  }
}

function route() {
  const match = /^#\/instances\/(.+)$/.exec(window.location.hash);
  if (match) showInstance(decodeURIComponent(match[1]));
  else showList();
}

connect();
window.addEventListener('hashchange', route);
state.ticker = setInterval(tick, 1000);
route();
