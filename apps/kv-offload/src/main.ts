import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type DiskKind, runOffload } from './offload.js';

const USAGE = `usage: tierkit-kv-offload [--disk fs|gds|3fs] [--dir DIR] [--conversations N] [--turns N]
  [--system-tokens N] [--turn-tokens N] [--chunk-size N] [--bytes-per-token N] [--memory-mib N] [--keep]

Offloads and reloads the KV chunks of synthetic multi-turn conversations sharing a
system prompt, through a memory tier over a disk tier, and prints hit rates and bytes moved.`;

function int(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      disk: { type: 'string', default: 'fs' },
      dir: { type: 'string' },
      conversations: { type: 'string' },
      turns: { type: 'string' },
      'system-tokens': { type: 'string' },
      'turn-tokens': { type: 'string' },
      'chunk-size': { type: 'string' },
      'bytes-per-token': { type: 'string' },
      'memory-mib': { type: 'string' },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const disk = values.disk as DiskKind;
  if (!['fs', 'gds', '3fs'].includes(disk))
    throw new Error(`--disk must be fs, gds or 3fs, got ${values.disk}`);
  const dir = values.dir ?? (await mkdtemp(join(tmpdir(), 'tierkit-kv-offload-')));
  try {
    await runOffload({
      dir,
      disk,
      conversations: int('conversations', values.conversations, 4),
      turns: int('turns', values.turns, 4),
      systemTokens: int('system-tokens', values['system-tokens'], 1024),
      turnTokens: int('turn-tokens', values['turn-tokens'], 384),
      chunkSize: int('chunk-size', values['chunk-size'], 256),
      bytesPerToken: int('bytes-per-token', values['bytes-per-token'], 4096),
      memoryBytes: int('memory-mib', values['memory-mib'], 24) * 2 ** 20,
      log: (line) => console.log(line),
    });
  } finally {
    if (!values.keep && values.dir === undefined) await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`kv-offload: ${err instanceof Error ? err.message : err}`);
  process.exitCode = 1;
});
