// The console's shell: the header (navigation, token) and a hash router that draws one page
// at a time and stops the previous page's polling when the route changes.

import './style.css';
import { getToken, setToken } from './api';
import { errorBox, h, mount, s } from './dom';
import type { Page, PageContext } from './page';
import { overviewPage } from './pages/overview';
import { streamsPage } from './pages/streams';
import { logPage } from './pages/log';
import { projectionsPage } from './pages/projections';
import { sagasPage } from './pages/sagas';
import { sagaPage } from './pages/saga';

interface Route {
  name: string;
  label?: string;
  page: (path: string[]) => Page | undefined;
}

const ROUTES: Route[] = [
  { name: 'overview', label: 'Overview', page: (rest) => (rest.length ? undefined : overviewPage) },
  { name: 'streams', label: 'Streams', page: (rest) => (rest.length ? undefined : streamsPage) },
  { name: 'log', label: 'Global log', page: (rest) => (rest.length ? undefined : logPage) },
  { name: 'projections', label: 'Projections', page: (rest) => (rest.length ? undefined : projectionsPage) },
  { name: 'sagas', label: 'Sagas', page: (rest) => (rest.length === 0 ? sagasPage : rest.length === 1 ? sagaPage : undefined) },
];

const nav = h('nav', { class: 'nav' });
const main = h('main', { class: 'content', id: 'content' });
let current: AbortController | undefined;

function header(): HTMLElement {
  const token = h('input', {
    type: 'password',
    class: 'token',
    placeholder: 'none (auth disabled)',
    title: 'A bearer token with the auditor role (operator to answer dead letters); kept for this tab only',
    autocomplete: 'off',
    spellcheck: 'false',
    'aria-label': 'Bearer token',
    'data-testid': 'token',
    value: getToken(),
  });
  token.addEventListener('change', () => {
    setToken(token.value);
    render();
  });
  return h(
    'header',
    { class: 'topbar' },
    h(
      'a',
      { class: 'brand', href: '#/overview' },
      s('svg', { class: 'brand-mark', viewBox: '0 0 24 24', 'aria-hidden': 'true' }, s('path', { d: 'M3 9h18l-3 7H6z M11 2h2v7h-2z M12 16v6' })),
      'keel',
      h('span', { class: 'brand-sub' }, 'console'),
    ),
    nav,
    h('label', { class: 'token-label' }, 'Token', token),
  );
}

function parseHash(): { segments: string[]; params: URLSearchParams } {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path = '', query = ''] = raw.split('?', 2);
  const segments = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { segments, params: new URLSearchParams(query) };
}

function render(): void {
  current?.abort();
  const controller = new AbortController();
  current = controller;

  const { segments, params } = parseHash();
  if (segments.length === 0) {
    history.replaceState(null, '', '#/overview');
    segments.push('overview');
  }
  const [name, ...rest] = segments;
  const route = ROUTES.find((r) => r.name === name);
  const page = route?.page(rest);

  mount(
    nav,
    ROUTES.filter((r) => r.label).map((r) =>
      h('a', { href: `#/${r.name}`, class: r === route ? 'active' : '', 'data-testid': `nav-${r.name}` }, r.label),
    ),
  );

  const root = h('div', { class: 'page', 'data-page': name ?? '' });
  mount(main, root);
  if (!page) {
    mount(root, h('h1', null, 'Not found'), h('p', null, 'No page at ', h('code', null, location.hash), '.'));
    return;
  }
  const ctx: PageContext = { root, path: rest, params, signal: controller.signal };
  try {
    const done = page(ctx);
    if (done instanceof Promise) done.catch((error: unknown) => showCrash(ctx, error));
  } catch (error) {
    showCrash(ctx, error);
  }
}

function showCrash(ctx: PageContext, error: unknown): void {
  if (ctx.signal.aborted) return;
  console.error(error);
  ctx.root.append(errorBox(error));
}

const app = document.getElementById('app');
if (!app) throw new Error('index.html lacks #app');
mount(app, header(), main);
window.addEventListener('hashchange', render);
render();
