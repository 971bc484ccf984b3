// #/projections: where each projection stands (position, lag, rate, parked and retrying
// aggregates, dead letters, a running rebuild's progress and ETA), and the dead letters with
// the operator's answers: retry, or skip with a reason.

import { ApiError, get, post, seg } from '../api';
import {
  badge,
  empty,
  errorBox,
  fmtAgo,
  fmtNum,
  fmtRate,
  fmtSeconds,
  fmtTime,
  h,
  idCell,
  mount,
  routeHref,
  statusBadge,
} from '../dom';
import { poll, type Page } from '../page';
import { rate, sampleProjections } from '../samples';
import {
  PROJECTIONS,
  type DeadLetter,
  type DeadLetterAnswer,
  type DeadLettersResponse,
  type ProjectionStatus,
} from '../types';

function progress(done: number, total: number, testid: string): HTMLElement {
  const fraction = total > 0 ? Math.min(1, done / total) : 1;
  return h(
    'div',
    { class: 'progress', 'data-testid': testid, title: `${(fraction * 100).toFixed(1)} %` },
    h('div', { class: 'progress-bar', style: `width: ${(fraction * 100).toFixed(2)}%` }),
  );
}

function rebuildCell(p: ProjectionStatus): HTMLElement | string {
  const r = p.rebuild;
  if (!r) return h('span', { class: 'muted' }, '—');
  if (!r.running) {
    return h('span', { class: 'muted' }, `${r.source} rebuild stopped at ${fmtNum(r.events_read)} read`);
  }
  const readRate = rate(p.projection, (q) => (q.rebuild?.running ? q.rebuild.events_read : undefined));
  const remaining = Math.max(0, p.events_in_store - r.events_read);
  const eta = readRate && readRate > 0 ? remaining / readRate : null;
  return h(
    'div',
    { class: 'rebuild', 'data-testid': `rebuild-${p.projection}` },
    progress(r.events_read, p.events_in_store, `rebuild-progress-${p.projection}`),
    h(
      'div',
      { class: 'small' },
      `${r.source}: ${fmtNum(r.events_read)} read, ${fmtNum(r.events_applied)} applied of ${fmtNum(p.events_in_store)} · ${fmtRate(readRate)} · ETA ${eta === null ? '—' : fmtSeconds(eta)}`,
    ),
  );
}

function projectionRow(p: ProjectionStatus): HTMLTableRowElement {
  const applyRate = rate(p.projection, (q) => q.events_applied);
  const lagTone = p.lag_events === 0 ? 'ok' : (p.lag_seconds ?? 0) > 30 ? 'bad' : 'warn';
  const count = (n: number | undefined, tone: 'warn' | 'bad', testid: string) =>
    h(
      'td',
      { class: 'num', 'data-testid': testid, 'data-value': n ?? '' },
      n === undefined ? h('span', { class: 'muted', title: 'not reported' }, '—') : n > 0 ? badge(fmtNum(n), tone) : h('span', { class: 'muted' }, '0'),
    );
  return h(
    'tr',
    { 'data-testid': `projection-${p.projection}` },
    h('td', null, h('strong', null, p.projection)),
    h(
      'td',
      { class: 'position' },
      progress(p.events_applied, p.events_in_store, `position-${p.projection}`),
      h('div', { class: 'small mono' }, `${fmtNum(p.events_applied)} of ${fmtNum(p.events_in_store)}`),
    ),
    h('td', { class: 'num', 'data-testid': `lag-events-${p.projection}`, 'data-value': p.lag_events }, badge(fmtNum(p.lag_events), lagTone)),
    h('td', { class: 'num', 'data-testid': `lag-seconds-${p.projection}`, 'data-value': p.lag_seconds ?? '' }, p.lag_seconds === null ? '—' : fmtSeconds(p.lag_seconds)),
    h('td', { class: 'num', 'data-testid': `rate-${p.projection}` }, fmtRate(applyRate)),
    h('td', { class: 'num' }, fmtNum(p.aggregates)),
    count(p.parked_aggregates, 'bad', `parked-${p.projection}`),
    count(p.retrying_aggregates, 'warn', `retrying-${p.projection}`),
    count(p.dead_letters_unresolved, 'bad', `dead-letters-${p.projection}`),
    h('td', { class: 'nowrap', title: p.last_checkpoint_at ?? '' }, fmtAgo(p.last_checkpoint_at)),
    h('td', null, rebuildCell(p)),
  );
}

export const projectionsPage: Page = (ctx) => {
  const statusError = h('div');
  const statusTable = h('div', { class: 'table-wrap' }, h('div', { class: 'loading' }, 'Loading…'));
  const sampledAt = h('span', { class: 'muted' });

  // --- Dead letters ---
  const projectionFilter = ctx.params.get('projection') ?? '';
  let includeResolved = ctx.params.get('include_resolved') !== 'false';
  const filterSelect = h(
    'select',
    { 'aria-label': 'projection', 'data-testid': 'dead-letter-projection' },
    h('option', { value: '' }, 'every projection'),
    PROJECTIONS.map((p) => h('option', { value: p, selected: p === projectionFilter }, p)),
  );
  const resolvedToggle = h('input', { type: 'checkbox', checked: includeResolved, 'data-testid': 'include-resolved' });
  const flash = h('div', { class: 'flash', 'data-testid': 'flash', 'aria-live': 'polite' });
  const lettersError = h('div');
  const lettersBox = h('div', { class: 'table-wrap' }, h('div', { class: 'loading' }, 'Loading…'));
  /** The letter whose skip form is open: the table is left as it is meanwhile. */
  let skipping: number | null = null;
  let lastLetters = '';

  const refreshLetters = async (): Promise<void> => {
    try {
      const res = await get<DeadLettersResponse>(
        '/console/api/dead-letters',
        { projection: filterSelect.value, include_resolved: includeResolved, limit: 50 },
        ctx.signal,
      );
      mount(lettersError);
      const json = JSON.stringify(res.dead_letters);
      if (skipping !== null || json === lastLetters) return;
      lastLetters = json;
      mount(lettersBox, lettersTable(res.dead_letters));
    } catch (error) {
      if (!ctx.signal.aborted) mount(lettersError, errorBox(error));
    }
  };

  const answered = (verb: string, id: number, answer: DeadLetterAnswer): void => {
    const others = answer.dead_letters.filter((d) => d !== id);
    mount(
      flash,
      h(
        'div',
        { class: 'alert alert-ok', 'data-testid': 'flash-ok' },
        `Dead letter ${id} ${verb} by ${answer.actor}: ${answer.requeued} event${answer.requeued === 1 ? '' : 's'} requeued`,
        others.length ? ` (with letters ${others.join(', ')} parked behind it)` : '',
        '.',
      ),
    );
  };
  const failed = (id: number, error: unknown): void => {
    const lead = error instanceof ApiError && error.status === 409 ? `Dead letter ${id} cannot be answered yet.` : `Dead letter ${id}: the answer was refused.`;
    mount(flash, h('div', null, h('div', { class: 'small strong' }, lead), errorBox(error)));
  };

  const retry = async (letter: DeadLetter, button: HTMLButtonElement): Promise<void> => {
    button.disabled = true;
    try {
      answered('retried', letter.id, await post<DeadLetterAnswer>(`/console/api/dead-letters/${seg(String(letter.id))}/retry`, {}));
    } catch (error) {
      failed(letter.id, error);
    } finally {
      button.disabled = false;
      lastLetters = '';
      await refreshLetters();
    }
  };

  const skipForm = (letter: DeadLetter, columns: number): HTMLTableRowElement => {
    const reason = h('input', {
      class: 'reason',
      maxlength: 1000,
      required: true,
      placeholder: 'why this event is given up (recorded with your name)',
      'data-testid': `skip-reason-${letter.id}`,
    });
    const submit = h('button', { type: 'submit', class: 'btn btn-danger', 'data-testid': `skip-confirm-${letter.id}` }, 'Skip event');
    const form = h(
      'form',
      { class: 'toolbar inline-form' },
      h('span', { class: 'small' }, `Skip ${letter.aggregate_type} ${letter.aggregate_id} #${letter.sequence}: its effect stays missing until a rebuild.`),
      reason,
      submit,
      h('button', { type: 'button', class: 'btn', onclick: () => close() }, 'Cancel'),
    );
    const tr = h('tr', { class: 'detail', 'data-testid': `skip-form-${letter.id}` }, h('td', { colspan: columns }, form));
    const close = (): void => {
      skipping = null;
      tr.remove();
      lastLetters = '';
      void refreshLetters();
    };
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const text = reason.value.trim();
      if (text.length < 1 || text.length > 1000) return;
      submit.disabled = true;
      try {
        answered('skipped', letter.id, await post<DeadLetterAnswer>(`/console/api/dead-letters/${seg(String(letter.id))}/skip`, { reason: text }));
        close();
      } catch (error) {
        failed(letter.id, error);
        submit.disabled = false;
      }
    });
    queueMicrotask(() => reason.focus());
    return tr;
  };

  const lettersTable = (letters: DeadLetter[]): HTMLElement => {
    if (letters.length === 0) return empty(includeResolved ? 'No dead letters.' : 'No unanswered dead letters.');
    const columns = ['id', 'projection', 'reason', 'aggregate', 'seq', 'message', 'error', 'attempts', 'dead-lettered (UTC)', 'answer'];
    const body = h('tbody');
    for (const d of letters) {
      const answer = h('td', { class: d.resolution ? 'answer' : 'actions', 'data-testid': `resolution-${d.id}` });
      if (d.resolution) {
        mount(
          answer,
          statusBadge(d.resolution, { 'data-testid': `resolution-badge-${d.id}` }),
          h('span', { class: 'small' }, ` by ${d.resolved_by ?? '?'} `, h('span', { class: 'muted', title: d.resolved_at ?? '' }, fmtAgo(d.resolved_at))),
          d.resolution_reason ? h('div', { class: 'small muted', title: d.resolution_reason }, `“${d.resolution_reason}”`) : null,
        );
      } else {
        const retryButton = h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-testid': `retry-${d.id}` }, 'Retry');
        retryButton.addEventListener('click', () => void retry(d, retryButton));
        const skipButton = h('button', { type: 'button', class: 'btn btn-small', 'data-testid': `skip-${d.id}` }, 'Skip…');
        skipButton.addEventListener('click', () => {
          if (skipping === d.id) return;
          body.querySelector('tr[data-testid^="skip-form-"]')?.remove();
          skipping = d.id;
          tr.after(skipForm(d, columns.length));
        });
        mount(answer, retryButton, ' ', skipButton);
      }
      const tr = h(
        'tr',
        {
          'data-testid': `dead-letter-${d.id}`,
          'data-id': d.id,
          'data-aggregate-id': d.aggregate_id,
          'data-resolution': d.resolution ?? '',
          class: d.resolution ? 'resolved' : '',
        },
        h('td', { class: 'num mono' }, String(d.id)),
        h('td', null, d.projection),
        h('td', null, statusBadge(d.reason)),
        h('td', { class: 'nowrap' }, h('span', { class: 'muted' }, d.aggregate_type, ' '), idCell(d.aggregate_id, routeHref('streams', { type: d.aggregate_type, id: d.aggregate_id }), 20)),
        h('td', { class: 'num' }, String(d.sequence)),
        h('td', { class: 'mono small nowrap' }, `${d.topic}[${d.kafka_partition}]@${d.kafka_offset}`),
        h('td', { class: 'error-text', title: d.error }, d.error),
        h('td', { class: 'num' }, String(d.attempts)),
        h('td', { class: 'nowrap', title: d.dead_lettered_at }, fmtTime(d.dead_lettered_at)),
        answer,
      );
      body.append(tr);
    }
    return h(
      'table',
      { class: 'grid', 'data-testid': 'dead-letters' },
      h('thead', null, h('tr', null, columns.map((c) => h('th', null, c)))),
      body,
    );
  };

  filterSelect.addEventListener('change', () => {
    lastLetters = '';
    void refreshLetters();
  });
  resolvedToggle.addEventListener('change', () => {
    includeResolved = resolvedToggle.checked;
    lastLetters = '';
    void refreshLetters();
  });

  mount(
    ctx.root,
    h('div', { class: 'page-head' }, h('h1', null, 'Projections'), sampledAt),
    statusError,
    h('section', { class: 'card flush' }, statusTable),
    h(
      'section',
      { class: 'card' },
      h('h2', null, 'Dead letters'),
      h(
        'div',
        { class: 'toolbar' },
        filterSelect,
        h('label', { class: 'toggle' }, resolvedToggle, 'show answered ones'),
        h('span', { class: 'muted small' }, 'Retry puts the event and those parked behind it back, in order; skip gives the event up.'),
      ),
      flash,
      lettersError,
      lettersBox,
    ),
  );

  poll(ctx, 2000, async () => {
    try {
      const sample = await sampleProjections(ctx.signal);
      mount(statusError);
      sampledAt.textContent = `log head ${fmtNum(sample.response.log_head)} · sampled ${fmtTime(sample.response.sampled_at)} UTC · every 2 s`;
      mount(
        statusTable,
        h(
          'table',
          { class: 'grid', 'data-testid': 'projections' },
          h(
            'thead',
            null,
            h(
              'tr',
              null,
              ['projection', 'position (applied of in store)', 'lag (events)', 'lag (time)', 'rate', 'aggregates', 'parked', 'retrying', 'dead letters', 'last checkpoint', 'rebuild'].map((c) =>
                h('th', null, c),
              ),
            ),
          ),
          h('tbody', null, sample.response.projections.map(projectionRow)),
        ),
      );
    } catch (error) {
      if (!ctx.signal.aborted) mount(statusError, errorBox(error));
    }
  });
  poll(ctx, 2000, refreshLetters);
};
