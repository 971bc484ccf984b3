// Projection status samples kept in the browser: the last five minutes of
// /console/api/projections answers, from which the pages chart lag and compute rates and
// ETAs. They outlive a page, so going from Overview to Projections keeps the history.

import { get } from './api';
import type { ProjectionName, ProjectionStatus, ProjectionsResponse } from './types';

export interface Sample {
  /** `sampled_at`, epoch milliseconds. */
  at: number;
  response: ProjectionsResponse;
}

const KEEP_MS = 5 * 60_000;
const samples: Sample[] = [];

export async function sampleProjections(signal?: AbortSignal): Promise<Sample> {
  const response = await get<ProjectionsResponse>('/console/api/projections', undefined, signal);
  const at = Date.parse(response.sampled_at) || Date.now();
  const last = samples[samples.length - 1];
  if (!last || at > last.at) samples.push({ at, response });
  while (samples.length > 0 && samples[0]!.at < at - KEEP_MS) samples.shift();
  return samples[samples.length - 1]!;
}

export function sampleHistory(): readonly Sample[] {
  return samples;
}

function status(sample: Sample, name: ProjectionName): ProjectionStatus | undefined {
  return sample.response.projections.find((p) => p.projection === name);
}

/**
 * The per-second rate of a counter over the samples of the last `windowMs` (at least two
 * samples, else null).
 */
export function rate(
  name: ProjectionName,
  counter: (p: ProjectionStatus) => number | undefined,
  windowMs = 10_000,
): number | null {
  const last = samples[samples.length - 1];
  const lastStatus = last && status(last, name);
  const lastValue = lastStatus ? counter(lastStatus) : undefined;
  if (!last || lastValue === undefined) return null;
  for (const sample of samples) {
    if (sample.at >= last.at - windowMs && sample.at < last.at) {
      const p = status(sample, name);
      const value = p ? counter(p) : undefined;
      if (value === undefined || value > lastValue) continue; // a restarted counter
      return ((lastValue - value) * 1000) / (last.at - sample.at);
    }
  }
  return null;
}

/** One projection's series of `value` over the kept samples. */
export function series(name: ProjectionName, value: (p: ProjectionStatus) => number): { t: number; v: number }[] {
  const points: { t: number; v: number }[] = [];
  for (const sample of samples) {
    const p = status(sample, name);
    if (p) points.push({ t: sample.at, v: value(p) });
  }
  return points;
}
