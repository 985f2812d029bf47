#!/usr/bin/env node
// Runs the benchmark suites in bench/suites and writes, per suite,
// results/<name>.md and results/<name>.json, plus results/README.md linking them.
//
//   npm run bench                 # every suite
//   npm run bench -- lru fs       # only suites whose names are given
//   BENCH_QUICK=1 npm run bench   # smaller data, fewer runs (a smoke run)
//
// A suite is a module exporting `name`, `title` and `default async (ctx) => ({ markdown, data })`.
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const suitesDir = join(here, 'suites');
const resultsDir = join(here, 'results');
const only = process.argv.slice(2);
const quick = process.env.BENCH_QUICK === '1';

const machine = {
  node: process.version,
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  date: new Date().toISOString(),
  quick,
};

await mkdir(resultsDir, { recursive: true });
const files = (await readdir(suitesDir)).filter((f) => f.endsWith('.mjs')).sort();
const ran = [];
for (const file of files) {
  const mod = await import(join(suitesDir, file));
  if (only.length > 0 && !only.includes(mod.name)) continue;
  console.log(`\n## ${mod.title} (${mod.name})`);
  const started = Date.now();
  const { markdown, data } = await mod.default({ quick, log: (...a) => console.log('  ', ...a), machine });
  const header = `# ${mod.title}\n\n_${machine.date}, Node ${machine.node}, ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB${quick ? ', quick run' : ''}_\n\n`;
  await writeFile(join(resultsDir, `${mod.name}.md`), `${header}${markdown}\n`);
  await writeFile(join(resultsDir, `${mod.name}.json`), `${JSON.stringify({ machine, data }, null, 2)}\n`);
  console.log(markdown);
  ran.push({ name: mod.name, title: mod.title, seconds: (Date.now() - started) / 1000 });
}
if (only.length === 0) {
  const index = ran.map((r) => `- [${r.title}](./${r.name}.md)`).join('\n');
  await writeFile(
    join(resultsDir, 'README.md'),
    `# Benchmark results\n\nProduced by \`npm run bench\`.\n\n${index}\n`,
  );
}
