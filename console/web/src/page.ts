// What the router hands a page: where to draw, the route's parameters, and a signal that
// aborts when the operator leaves (which also stops the page's polling).

export interface PageContext {
  /** The page's own element; the router empties it on every route change. */
  root: HTMLElement;
  /** `#/sagas/<id>` gives `['<id>']`. */
  path: string[];
  /** The route's query string (`#/log?correlation_id=…`). */
  params: URLSearchParams;
  signal: AbortSignal;
}

export type Page = (ctx: PageContext) => void | Promise<void>;

/**
 * Runs `tick` now and then `ms` after each run ends (never two at once), until the page is
 * left. A tick that throws is the tick's own business: it shows its error and polling goes on.
 */
export function poll(ctx: PageContext, ms: number, tick: () => Promise<void> | void): void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const run = async (): Promise<void> => {
    if (ctx.signal.aborted) return;
    try {
      await tick();
    } catch (error) {
      if (!ctx.signal.aborted) console.error(error);
    }
    if (!ctx.signal.aborted) timer = setTimeout(run, ms);
  };
  ctx.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  void run();
}

/** Changes the route (the router draws the new page). */
export function navigate(hash: string, replace = false): void {
  if (replace || location.hash === hash) {
    // The same route again (a form sent unchanged) reloads it.
    history.replaceState(null, '', hash);
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    location.hash = hash;
  }
}
