// Side-by-side measurement: contestants run in rounds (one run of each per
// round), so slow drifts of a shared machine fall on all of them alike.
import { fmt, MiB, summarize } from '../stats.mjs';
import { collect } from './data.mjs';

/**
 * Runs every contestant `runs` times in rounds (the order rotating), after `warmup` untimed rounds. A contestant is
 * `{ id, label, run: async (round) => seconds | void, after?: async () => void }`:
 * when `run` returns a number it is the timed part, else the whole call is timed.
 * A contestant that throws is dropped from later rounds and keeps its error.
 * Returns Map id → { label, seconds[], error? }.
 */
export async function rounds(contestants, { runs, warmup = 0, log = () => {}, bytes }) {
  const out = new Map(contestants.map((c) => [c.id, { label: c.label, seconds: [], error: undefined }]));
  for (let r = -warmup; r < runs; r++) {
    // Each round starts with the next contestant, so whatever the first of a round pays
    // (the kernel reclaiming the last round's memory, say) falls on each in turn.
    const shift = ((r % contestants.length) + contestants.length) % contestants.length;
    const order = [...contestants.slice(shift), ...contestants.slice(0, shift)];
    for (const c of order) {
      const rec = out.get(c.id);
      if (rec.error) continue;
      collect();
      try {
        const t0 = process.hrtime.bigint();
        const inner = await c.run(r);
        const s = typeof inner === 'number' ? inner : Number(process.hrtime.bigint() - t0) / 1e9;
        if (r < 0) continue;
        rec.seconds.push(s);
        log(`${c.label} run ${r + 1}/${runs}: ${fmt(bytes / MiB / s, 0)} MiB/s`);
      } catch (err) {
        rec.error = err instanceof Error ? err.message : String(err);
        log(`${c.label} failed: ${rec.error.split('\n')[0]}`);
      } finally {
        await c.after?.();
      }
    }
  }
  return out;
}

/** Throughput figures of one record: median, min and max in MiB/s. */
export function throughput(rec, bytes) {
  if (!rec || rec.seconds.length === 0) return undefined;
  const s = summarize(rec.seconds);
  return { median: bytes / MiB / s.median, min: bytes / MiB / s.max, max: bytes / MiB / s.min, n: s.n };
}

export function ratio(a, b) {
  return a && b ? a / b : Number.NaN;
}

/** A markdown table of records, with tierkit's ratio to each row. */
export function resultsTable(records, bytes, { reference, referenceLabel = 'tierkit', extra } = {}) {
  const refT = throughput(records.get(reference), bytes);
  const head = ['contestant', 'median MiB/s', 'min', 'max', 'runs', `${referenceLabel} ÷ this`];
  if (extra) head.push(extra.title);
  const lines = [
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`,
  ];
  for (const [id, rec] of records) {
    const t = throughput(rec, bytes);
    if (!t) {
      lines.push(
        `| ${rec.label} | failed: ${(rec.error ?? 'no runs').split('\n')[0].slice(0, 160).replaceAll('|', '\\|')} | | | 0 | |${extra ? ' |' : ''}`,
      );
      continue;
    }
    const cells = [
      rec.label,
      fmt(t.median, 0),
      fmt(t.min, 0),
      fmt(t.max, 0),
      String(t.n),
      id === reference ? '—' : refT ? `${fmt(ratio(refT.median, t.median))}×` : 'n/a',
    ];
    if (extra) cells.push(extra.cell(id, t));
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** A markdown table of targets: { what, value, reference, refLabel, needed } → met or not. */
export function targetsTable(targets) {
  const lines = [
    '| target | tierkit MiB/s | reference | reference MiB/s | ratio | needed | met |',
    '| --- | ---: | --- | ---: | ---: | ---: | --- |',
  ];
  const data = [];
  for (const t of targets) {
    const r = ratio(t.value, t.reference);
    const met = Number.isFinite(r) ? r >= t.needed : undefined;
    data.push({ ...t, ratio: r, met });
    lines.push(
      `| ${t.what} | ${t.value ? fmt(t.value, 0) : 'n/a'} | ${t.refLabel} | ${t.reference ? fmt(t.reference, 0) : 'n/a'} | ${Number.isFinite(r) ? `${fmt(r)}×` : 'n/a'} | ≥ ${t.needed}× | ${met === undefined ? 'not measured' : met ? 'met' : '**not met**'} |`,
    );
  }
  return { markdown: lines.join('\n'), data };
}

/** Plain JSON of the records. */
export function recordsJson(records, bytes) {
  return Object.fromEntries(
    [...records].map(([id, rec]) => [
      id,
      { label: rec.label, seconds: rec.seconds, error: rec.error, mibPerSecond: throughput(rec, bytes) },
    ]),
  );
}
