// The one way the console talks to the platform: same-origin fetches, a bearer token when
// the operator has set one, and problem+json errors turned into ApiError.

const TOKEN_KEY = 'keel.console.token';

export function getToken(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? '';
}

export function setToken(token: string): void {
  const trimmed = token.trim();
  if (trimmed) sessionStorage.setItem(TOKEN_KEY, trimmed);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** A refused or failed call: the problem document's fields when the server sent one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail?: string,
    readonly code?: string,
  ) {
    super(detail ? `${title}: ${detail}` : title);
    this.name = 'ApiError';
  }
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export interface RequestOptions {
  query?: Query;
  method?: 'GET' | 'POST';
  body?: unknown;
  signal?: AbortSignal;
}

/**
 * `path` (an API route such as `/audit/events`) under the API's root, which is the folder
 * above the console's own (`…/console/`), whatever prefix a proxy puts before both. Empty
 * query values are left out: the APIs refuse empty parameters.
 */
function withQuery(path: string, query: Query = {}): string {
  const url = new URL(path.replace(/^\/+/, ''), new URL('../', document.baseURI));
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== '') url.searchParams.set(key, String(value));
  }
  return url.href;
}

export async function api<T>(path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  const init: RequestInit = { method: options.method ?? 'GET', headers };
  if (options.body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  if (options.signal) init.signal = options.signal;

  let response: Response;
  try {
    response = await fetch(withQuery(path, options.query), init);
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw new ApiError(0, 'The platform does not answer', error instanceof Error ? error.message : String(error));
  }
  const type = response.headers.get('content-type') ?? '';
  const body: unknown = type.includes('json') ? await response.json().catch(() => null) : null;
  if (!response.ok) throw problem(response, body);
  return body as T;
}

function problem(response: Response, body: unknown): ApiError {
  if (body && typeof body === 'object') {
    const p = body as { title?: unknown; detail?: unknown; code?: unknown };
    return new ApiError(
      response.status,
      typeof p.title === 'string' ? p.title : response.statusText || `HTTP ${response.status}`,
      typeof p.detail === 'string' ? p.detail : undefined,
      typeof p.code === 'string' ? p.code : undefined,
    );
  }
  return new ApiError(response.status, response.statusText || `HTTP ${response.status}`);
}

export const get = <T>(path: string, query?: Query, signal?: AbortSignal): Promise<T> =>
  api<T>(path, { ...(query ? { query } : {}), ...(signal ? { signal } : {}) });

export const post = <T>(path: string, body: unknown): Promise<T> => api<T>(path, { method: 'POST', body });

/** A path segment, escaped. */
export const seg = encodeURIComponent;
