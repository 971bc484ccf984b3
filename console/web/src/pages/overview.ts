// #/overview: commands and events per second over the last five minutes, the projections'
// lag from the page's own samples, and totals.

import { get } from '../api';
import { timeChart } from '../chart';
import { card, errorBox, fmtNum, fmtRate, h, mount } from '../dom';
import { poll, type Page } from '../page';
import { sampleHistory, sampleProjections, series } from '../samples';
import { PROJECTIONS, type Overview } from '../types';

const WINDOW_MINUTES = 5;
export const PROJECTION_COLORS: Record<string, string> = { orders: '#0ea5e9', stock: '#f59e0b', payments: '#10b981' };

function kpi(label: string, value: string, testid: string, raw: number | null): HTMLElement {
  return h(
    'div',
    { class: 'kpi', 'data-testid': testid, 'data-value': raw ?? '' },
    h('div', { class: 'kpi-value' }, value),
    h('div', { class: 'kpi-label' }, label),
  );
}

/** Events and commands per second over the complete buckets of the last 30 s. */
function recentRates(overview: Overview): { events: number | null; commands: number | null } {
  const now = Date.parse(overview.now);
  const span = overview.bucket_seconds * 1000;
  const recent = overview.buckets.filter((b) => {
    const at = Date.parse(b.at);
    return at + span <= now && at + span > now - 30_000;
  });
  if (recent.length === 0) return { events: null, commands: null };
  const seconds = recent.length * overview.bucket_seconds;
  const sum = (pick: (b: (typeof recent)[number]) => number): number => recent.reduce((n, b) => n + pick(b), 0);
  return { events: sum((b) => b.events) / seconds, commands: sum((b) => b.commands) / seconds };
}

export const overviewPage: Page = (ctx) => {
  const kpis = h('div', { class: 'kpis' });
  const activityError = h('div');
  const lagError = h('div');
  const eventsChart = h('div', { class: 'chart-box' });
  const commandsChart = h('div', { class: 'chart-box' });
  const lagChart = h('div', { class: 'chart-box' });
  const lagKpis = h('div', { class: 'kpis' });

  mount(
    ctx.root,
    h('div', { class: 'page-head' }, h('h1', null, 'Overview'), h('span', { class: 'muted' }, `last ${WINDOW_MINUTES} minutes · refreshed every 2 s · times in UTC`)),
    activityError,
    kpis,
    h(
      'div',
      { class: 'charts' },
      card('Events per second', eventsChart),
      card('Commands per second', commandsChart),
    ),
    lagError,
    h(
      'div',
      { class: 'charts' },
      card(h('span', null, 'Projection lag (events) ', h('a', { href: '#/projections', class: 'small' }, 'details →')), lagKpis, lagChart),
    ),
  );

  poll(ctx, 2000, async () => {
    try {
      const overview = await get<Overview>('/console/api/overview', { minutes: WINDOW_MINUTES }, ctx.signal);
      mount(activityError);
      const now = Date.parse(overview.now);
      const from = now - WINDOW_MINUTES * 60_000;
      const bucketMs = overview.bucket_seconds * 1000;
      const points = (pick: (b: Overview['buckets'][number]) => number) =>
        overview.buckets.map((b) => ({ t: Date.parse(b.at), v: pick(b) / overview.bucket_seconds }));
      const totalEvents = overview.buckets.reduce((n, b) => n + b.events, 0);
      const totalCommands = overview.buckets.reduce((n, b) => n + b.commands, 0);
      const rates = recentRates(overview);
      mount(
        kpis,
        kpi('events/s (last 30 s)', fmtRate(rates.events), 'rate-events', rates.events),
        kpi('commands/s (last 30 s)', fmtRate(rates.commands), 'rate-commands', rates.commands),
        kpi(`events in ${WINDOW_MINUTES} min`, fmtNum(totalEvents), 'total-events', totalEvents),
        kpi(`commands in ${WINDOW_MINUTES} min`, fmtNum(totalCommands), 'total-commands', totalCommands),
        kpi('log head (global position)', fmtNum(overview.log_head), 'log-head', overview.log_head),
      );
      mount(
        eventsChart,
        timeChart({
          series: [{ name: 'events', color: '#3b82f6', points: points((b) => b.events) }],
          from,
          to: now,
          kind: 'bars',
          bucketMs,
          unit: 'events/s',
          attrs: { 'data-testid': 'chart-events' },
        }),
      );
      mount(
        commandsChart,
        timeChart({
          series: [{ name: 'commands', color: '#8b5cf6', points: points((b) => b.commands) }],
          from,
          to: now,
          kind: 'bars',
          bucketMs,
          unit: 'commands/s',
          attrs: { 'data-testid': 'chart-commands' },
        }),
      );
    } catch (error) {
      if (!ctx.signal.aborted) mount(activityError, errorBox(error));
    }
  });

  poll(ctx, 2000, async () => {
    try {
      const latest = await sampleProjections(ctx.signal);
      mount(lagError);
      const to = latest.at;
      mount(
        lagKpis,
        latest.response.projections.map((p) =>
          kpi(p.projection, `${fmtNum(p.lag_events)} behind`, `lag-${p.projection}`, p.lag_events),
        ),
      );
      mount(
        lagChart,
        timeChart({
          series: PROJECTIONS.map((name) => ({
            name,
            color: PROJECTION_COLORS[name] ?? '#64748b',
            points: series(name, (p) => p.lag_events),
          })),
          from: to - WINDOW_MINUTES * 60_000,
          to,
          kind: 'lines',
          unit: 'events behind',
          width: 1280,
          height: 220,
          attrs: { 'data-testid': 'chart-lag', 'data-samples': sampleHistory().length },
        }),
      );
    } catch (error) {
      if (!ctx.signal.aborted) mount(lagError, errorBox(error));
    }
  });
};
