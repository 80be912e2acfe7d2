// Small DOM helpers shared by the views. Data is only ever set as text, never parsed as HTML.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'class') el.className = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'style' && typeof value === 'object') Object.assign(el.style, value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// A JSON text (as history events hold inputs) as its value; anything else unchanged.
export function decodeJsonText(value) {
  if (typeof value !== 'string') return value;
  const text = value.trim();
  if (!/^[[{"\d-]|^(true|false|null)$/.test(text)) return value;
  try { return JSON.parse(text); } catch { return value; }
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} kB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

const INLINE_LIMIT = 120;
const PRETTY_LIMIT = 2_000_000;

// A payload: short ones inline, long ones collapsed and rendered only when opened (lazy).
export function payload(value, { label = 'payload', decode = true } = {}) {
  const data = decode ? decodeJsonText(value) : value;
  if (data === undefined) return h('span', { class: 'muted' }, '—');
  const compact = typeof data === 'string' ? data : JSON.stringify(data);
  if (compact === undefined) return h('span', { class: 'muted' }, '—');
  if (compact.length <= INLINE_LIMIT) return h('code', { class: 'payload-inline' }, compact);
  const details = h(
    'details',
    { class: 'payload' },
    h('summary', {}, h('span', { class: 'payload-size' }, `${label} · ${formatBytes(compact.length)}`), ' ',
      h('span', { class: 'payload-preview' }, compact.slice(0, 60) + '…')),
  );
  details.addEventListener('toggle', () => {
    if (!details.open || details.dataset.filled) return;
    details.dataset.filled = '1';
    const text = typeof data === 'string' || compact.length > PRETTY_LIMIT ? compact : JSON.stringify(data, null, 2);
    details.append(h('pre', { class: 'payload-full', tabindex: '0' }, text));
  });
  return details;
}

export function statusBadge(status) {
  return h('span', { class: `badge status-${String(status || 'Unknown').toLowerCase()}` }, status || 'Unknown');
}

export function formatTime(ms) {
  if (ms === null || ms === undefined) return '—';
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  // Status times have whole seconds (.NET's "s" format): no made-up milliseconds for them.
  return ms % 1000 === 0 ? `${day} ${time}` : `${day} ${time}.${pad(d.getMilliseconds(), 3)}`;
}
