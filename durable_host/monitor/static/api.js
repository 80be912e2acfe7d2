// The Durable Functions HTTP management API, and nothing else: the page works against any host
// that serves it (durable_host, or a function app on Azure with its durabletask_extension key).

export const PREFIX = '/runtime/webhooks/durabletask';
export const CONTINUATION = 'x-ms-continuation-token';
export const STATUSES = ['Pending', 'Running', 'Suspended', 'Completed', 'Failed', 'Terminated', 'Canceled', 'ContinuedAsNew'];
export const TERMINAL = new Set(['Completed', 'Failed', 'Terminated', 'Canceled']);

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The management API's own words: the ASP.NET error body, a plain JSON string, or the status line.
export function errorMessage(status, data) {
  if (data && typeof data === 'object') {
    for (const key of ['ExceptionMessage', 'Message', 'message', 'error']) {
      if (data[key]) return `HTTP ${status}: ${data[key]}`;
    }
  }
  if (typeof data === 'string' && data.trim()) return `HTTP ${status}: ${data.trim().slice(0, 500)}`;
  const meaning = { 404: 'no such instance (unknown, or purged)', 410: 'the instance has already ended', 400: 'bad request' };
  return `HTTP ${status}${meaning[status] ? ': ' + meaning[status] : ''}`;
}

export class ManagementClient {
  // baseUrl: the app's origin ('' for the page's own origin); key: the durabletask_extension system key.
  constructor(baseUrl = '', key = '') {
    this.origin = (baseUrl || window.location.origin).replace(/\/+$/, '');
    this.key = key || '';
  }

  url(path, params = {}) {
    const url = new URL(`${this.origin}${PREFIX}/${path}`);
    for (const [name, value] of Object.entries(params)) {
      if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, String(value));
    }
    if (this.key) url.searchParams.set('code', this.key);
    return url.toString();
  }

  async request(method, path, { params = {}, headers = {}, body } = {}) {
    const init = { method, headers: { ...headers } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
    let response;
    try {
      response = await fetch(this.url(path, params), init);
    } catch (err) {
      throw new ApiError(0, `cannot reach ${this.origin} (${err.message}); on Azure, check the CORS setting`);
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch { data = text; }
    }
    if (response.status >= 400) throw new ApiError(response.status, errorMessage(response.status, data));
    return { status: response.status, data, headers: response.headers };
  }

  // One page of GET instances; `next` is the continuation token ('' or null on the last page).
  async list(filters = {}, token = '') {
    const params = {
      runtimeStatus: (filters.runtimeStatus || []).join(','),
      instanceIdPrefix: filters.instanceIdPrefix,
      createdTimeFrom: filters.createdTimeFrom,
      createdTimeTo: filters.createdTimeTo,
      showInput: filters.showInput ? 'true' : 'false',
      top: filters.top || 100,
    };
    const headers = token ? { [CONTINUATION]: token } : {};
    const answer = await this.request('GET', 'instances', { params, headers });
    return { items: Array.isArray(answer.data) ? answer.data : [], next: answer.headers.get(CONTINUATION) || '' };
  }

  // Every instance matching the filters (no input), page by page, up to `limit`: for the counts.
  async all(filters = {}, limit = 20000) {
    const items = [];
    let token = '';
    do {
      const page = await this.list({ ...filters, showInput: false, top: 1000 }, token);
      items.push(...page.items);
      token = page.next;
      if (!page.items.length) break;
    } while (token && items.length < limit);
    return { items, complete: !token };
  }

  async status(id, { history = true } = {}) {
    const params = { showInput: 'true' };
    if (history) Object.assign(params, { showHistory: 'true', showHistoryOutput: 'true' });
    return (await this.request('GET', `instances/${encodeURIComponent(id)}`, { params })).data;
  }

  // terminate / suspend / resume / rewind: 202, or the API's refusal as an ApiError.
  control(id, operation, reason) {
    return this.request('POST', `instances/${encodeURIComponent(id)}/${operation}`, { params: { reason } });
  }

  restart(id, newInstanceId) {
    return this.request('POST', `instances/${encodeURIComponent(id)}/restart`, {
      params: { restartWithNewInstanceId: newInstanceId ? 'true' : 'false' },
    });
  }

  raiseEvent(id, eventName, data) {
    return this.request('POST', `instances/${encodeURIComponent(id)}/raiseEvent/${encodeURIComponent(eventName)}`, {
      body: data === undefined ? null : data,
    });
  }

  purge(id) {
    return this.request('DELETE', `instances/${encodeURIComponent(id)}`);
  }
}
