/** The `tierkit` commands and their help. */
import { ENV_VARS } from '../config.js';
import { cmdLs, cmdMetrics, cmdPin, cmdPurge, cmdStat, cmdVerify } from './cache-cmds.js';
import type { Command } from './shared.js';
import { cmdBake, cmdCat, cmdWarm, WARM_OPTIONS } from './warm-cmds.js';

export const COMMANDS: Record<string, Command> = {
  warm: {
    summary: 'fetch what a manifest names into the cache (skips what is fresh)',
    usage: 'tierkit warm [KEY|PREFIX/|GLOB …] [--manifest FILE] [options]',
    options: WARM_OPTIONS,
    details: `Objects already cached and still matching the origin (size, ETag) are skipped; changed ones
are fetched again. Each fetched object gets a sha256 recorded for 'tierkit verify'.
  -m, --manifest FILE          JSON/YAML manifest, a Practicus model.json, or one item a line
  --concurrency N              objects fetched at once (default 4)
  --max-bytes-in-flight SIZE   bound on the bytes of objects being fetched at once (default 1GiB)
  --block-size SIZE            fill block size (default 8MiB)
  --dry-run                    list what would be fetched, fetch nothing
  --no-checksum                do not record sha256 checksums
  --metrics-port PORT          serve Prometheus metrics on 127.0.0.1:PORT while warming`,
    examples: [
      'tierkit warm --cache file:///var/cache/models --origin s3://models/llama llama-3-8b/',
      "tierkit warm -c tierkit.yaml --manifest model.json --json | jq '.summary'",
      "tierkit warm --cache /mnt/nvme/models --origin /mnt/nfs/models 'llama-3-8b/*.safetensors'",
    ],
    run: cmdWarm,
  },
  ls: {
    summary: 'list cached objects: key, size, state, last used, pinned',
    usage: 'tierkit ls [PREFIX] [--check]',
    options: { check: { type: 'boolean' } },
    details: `  --check    compare each entry with the origin (state fresh/stale/gone instead of cached)
States: cached (origin identity recorded), unknown (no origin identity), modified (changed
outside tierkit), and with --check: fresh, stale, gone.`,
    examples: [
      'tierkit ls --cache /var/cache/models',
      'tierkit ls llama-3-8b/ --check --origin s3://models --json',
    ],
    run: cmdLs,
  },
  stat: {
    summary: 'show one cached object and its origin',
    usage: 'tierkit stat KEY …',
    options: {},
    details:
      'Prints size, state, last use, pin, stored checksum, and the origin size/ETag when --origin is given.',
    examples: ['tierkit stat --cache /var/cache/models --origin s3://models llama-3-8b/config.json'],
    run: cmdStat,
  },
  verify: {
    summary: 'check cached objects against stored checksums and the origin',
    usage: 'tierkit verify [KEY …] [--prefix P] [--drop] [--seal]',
    options: { prefix: { type: 'string' }, drop: { type: 'boolean' }, seal: { type: 'boolean' } },
    details: `Re-reads every entry (or the KEYs given) and compares its sha256 with the one recorded at warm
time, and its recorded origin size/ETag with the origin's (when --origin is given).
  --prefix P   only keys starting with P
  --drop       delete bad entries (they are fetched again on the next read or warm)
  --seal       record a checksum for entries that have none
Exit status 1 when any entry is bad (corrupt, modified, stale, gone).`,
    examples: [
      'tierkit verify --cache /var/cache/models --origin s3://models',
      'tierkit verify --cache /var/cache/models --drop --json',
    ],
    run: cmdVerify,
  },
  purge: {
    summary: 'drop entries unused for a while and/or down to a byte budget (pinned ones stay)',
    usage: 'tierkit purge [--older-than DURATION] [--max-bytes SIZE] [--every DURATION]',
    options: {
      'older-than': { type: 'string' },
      'purge-unused-after': { type: 'string' },
      'max-bytes': { type: 'string' },
      every: { type: 'string' },
      'check-unused-every': { type: 'string' },
      'metrics-port': { type: 'string' },
    },
    details: `  --older-than D, --purge-unused-after D   drop entries unused for D (30s, 15m, 12h, 1d, 1w, 1h30m)
  --max-bytes SIZE                         then drop least recently used entries down to SIZE
  --every D, --check-unused-every D        keep running and purge every D (until SIGINT/SIGTERM)
  --metrics-port PORT                      with --every: serve Prometheus metrics on 127.0.0.1:PORT`,
    examples: [
      'tierkit purge --cache /var/cache/models --older-than 1w',
      'tierkit purge --cache /var/cache/models --older-than 1w --every 1d   # MLIS-style',
      'tierkit purge --cache /var/cache/models --max-bytes 400GiB',
    ],
    noArguments: true,
    run: cmdPurge,
  },
  pin: {
    summary: 'keep objects from eviction and purges (persists, shared by every process)',
    usage: 'tierkit pin KEY|PREFIX/|GLOB …',
    options: {},
    details: `A key can be pinned before it is cached. A prefix (llama-3-8b/) or glob pins what is cached under
it, and with --origin (or tiers:) what the origin has under it too. Pins live in <cache>/.tierkit/pins.`,
    examples: [
      'tierkit pin --cache /var/cache/models llama-3-8b/model-00001-of-00004.safetensors',
      'tierkit pin --cache /var/cache/models --origin s3://models llama-3-8b/',
    ],
    run: (ctx) => cmdPin(ctx, true),
  },
  unpin: {
    summary: 'let objects be evicted and purged again',
    usage: 'tierkit unpin KEY|PREFIX/|GLOB …',
    options: {},
    details:
      'A prefix or glob unpins what is cached under it (and with --origin what the origin has under it).',
    examples: [
      'tierkit unpin --cache /var/cache/models llama-3-8b/model-00001-of-00004.safetensors',
      'tierkit unpin --cache /var/cache/models llama-3-8b/',
    ],
    run: (ctx) => cmdPin(ctx, false),
  },
  bake: {
    summary: 'materialise a manifest into a directory for a container image (starts warm)',
    usage: 'tierkit bake --out DIR [KEY|PREFIX/|GLOB …] [--manifest FILE] [--pin]',
    options: { ...WARM_OPTIONS, out: { type: 'string', short: 'o' }, pin: { type: 'boolean' } },
    details: `Writes a tier-fs cache root into DIR: plain files at their keys' paths plus .tierkit/ metadata
(origin size/ETag, sha256). Point the running container's --cache at DIR and it starts warm.
  -o, --out DIR   target directory (default: model.json's download_files_to)
  --pin           pin every baked object (never evicted or purged in the container)
Takes the warm options too.`,
    examples: [
      'tierkit bake --origin s3://models --out ./image/models llama-3-8b/ --pin',
      'RUN npx tierkit bake --origin s3://models --manifest model.json --out /var/cache/models   # Dockerfile',
    ],
    run: cmdBake,
  },
  cat: {
    summary: 'read objects through the stack (as an app would) to stdout or a file',
    usage: 'tierkit cat KEY … [--out FILE]',
    options: { out: { type: 'string', short: 'o' } },
    details: `A cached copy is served (checked against the origin as --validate says); a missing one is
fetched and kept. With --stale-if-error a cached copy is served when the origin cannot be reached.
  -o, --out FILE   write the object to FILE (one KEY)`,
    examples: [
      'tierkit cat --cache /var/cache/models --origin s3://models llama-3-8b/config.json',
      'tierkit cat -c tierkit.yaml --stale-if-error llama-3-8b/config.json -o config.json',
    ],
    run: cmdCat,
  },
  metrics: {
    summary: 'print Prometheus metrics of the cache (or serve them)',
    usage: 'tierkit metrics [--metrics-port PORT]',
    options: { 'metrics-port': { type: 'string' } },
    details: `Prints the cache's gauges (bytes, entries, pins) and counters in Prometheus text format.
  --metrics-port PORT   serve /metrics on 127.0.0.1:PORT until SIGINT/SIGTERM instead`,
    examples: [
      'tierkit metrics --cache /var/cache/models',
      'tierkit metrics --cache /var/cache/models --metrics-port 9464',
    ],
    noArguments: true,
    run: cmdMetrics,
  },
};

export function mainHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return `tierkit — pre-warm, verify, bake and purge tierkit caches

Usage: tierkit <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`)
  .join('\n')}

Stack options (every command):
  --cache URL|DIR      the cache: file:///var/cache/models?maxBytes=200GiB, or a path
  --origin URL|DIR     the origin: s3://bucket/prefix[?endpoint=…&region=…], file:///…, or a path
  -c, --config FILE    YAML or JSON file with these settings (tiers or cache and origin, validate,
                       staleIfError, writeMode, manifest, concurrency, maxBytesInFlight, blockSize,
                       purgeUnusedAfter, checkUnusedEvery, maxBytes, metricsPort)
  --validate WHEN      check cached copies against the origin: never, first-open (default), always,
                       or a time to live such as 10m
  --stale-if-error     serve (and keep) cached copies when the origin cannot be reached; said once
  --json               one JSON document on stdout (for scripts)
  --progress MODE      bar, plain or none (default: bar on a terminal, plain otherwise)
  --disable-cache      bypass the cache and use the origin directly (TIERKIT_DISABLE_CACHE=1)
  -h, --help           help (tierkit <command> --help for a command)

Environment (overrides the config file; flags override both):
${Object.entries(ENV_VARS)
  .map(
    ([k, v]) => `  ${k.padEnd(28)} ${v}${k === 'TIERKIT_NOW_MS' ? ' (a fixed clock, for tests only)' : ''}`,
  )
  .join('\n')}
  AIOLI_DISABLE_MODEL_CACHE    disableCache, when TIERKIT_DISABLE_CACHE is unset (HPE MLIS)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL   for s3:// origins

Exit status: 0 success, 1 failure (some or all objects, or origin/cache unusable), 2 usage error.

Examples:
  tierkit warm --cache /var/cache/models --origin s3://models llama-3-8b/
  tierkit ls --cache /var/cache/models
  tierkit purge --cache /var/cache/models --older-than 1w
`;
}

export function commandHelp(name: string, c: Command): string {
  return `tierkit ${name} — ${c.summary}

Usage: ${c.usage} [--cache URL] [--origin URL] [--config FILE] [--json]

${c.details ? `${c.details}\n\n` : ''}Examples:
${c.examples.map((e) => `  ${e}`).join('\n')}

See 'tierkit --help' for the stack options and environment variables.
`;
}
