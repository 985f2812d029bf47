/**
 * The `tierkit` help: each command's summary, usage, details and examples. It
 * imports nothing heavy, so `tierkit --help` starts without loading the commands.
 */
import { ENV_VARS } from '../env-vars.js';

export interface CommandHelp {
  summary: string;
  usage: string;
  details: string;
  examples: string[];
}

export const HELP: Record<string, CommandHelp> = {
  warm: {
    summary: 'fetch what a manifest names into the cache (skips what is fresh)',
    usage:
      'tierkit warm [KEY|PREFIX/|GLOB …] [--manifest FILE] [options]\n       tierkit warm MODEL [--tensors PATTERN …] [--rank R --world-size N [--split PATTERN=DIM|megatron …]]',
    details: `Objects already cached and still matching the origin (size, ETag) are skipped; changed ones
are fetched again. Each fetched object gets a sha256 recorded for 'tierkit verify'.
  -m, --manifest FILE          JSON/YAML manifest, a Practicus model.json, or one item a line
  --concurrency N              objects fetched at once (default 8; small files get a lane of their own)
  --max-bytes-in-flight SIZE   bound on the bytes of objects being fetched at once (default 1GiB)
  --block-size SIZE            fill block size (default 8MiB)
  --dry-run                    list what would be fetched (and deleted), fetch nothing
  --check                      coverage: what is cached and fresh, fetch nothing; exit 1 unless all is
  --delete                     drop cached objects under the prefixes/globs the origin no longer has
  --exclude GLOB               leave out keys matching GLOB (or starting with PREFIX/); repeatable
  --allow-empty                a prefix or glob matching nothing is not an error (it is by default)
  --no-checksum                do not record sha256 checksums
  --metrics-port PORT          serve Prometheus metrics on 127.0.0.1:PORT while warming

A rank's tensors (pre-warm exactly what one tensor-parallel rank will load; MODEL is a
.safetensors or .gguf file, a *.index.json, several files, or a prefix holding one of those):
  --tensors PATTERN            only these tensors: a name or a glob ('model.layers.*'); repeatable
  --rank R --world-size N      rank R of N: split tensors are warmed only for R's slice
  --split PATTERN=DIM          split tensors matching PATTERN along DIM (0 rows, 1 or -1 columns);
                               repeatable, the first match wins; unmatched tensors are read whole
  --split megatron             Llama-style names: q/k/v/gate/up_proj, embed_tokens, lm_head along
                               dim 0, o_proj/down_proj along dim 1 (GGUF names too)
  --block-size must be the size the readers' stack uses (default 8MiB): whole blocks are cached.`,
    examples: [
      'tierkit warm --cache file:///var/cache/models --origin s3://models/llama llama-3-8b/',
      "tierkit warm -c tierkit.yaml --manifest model.json --json | jq '.summary'",
      "tierkit warm --cache /mnt/nvme/models --origin /mnt/nfs/models 'llama-3-8b/*.safetensors'",
      'tierkit warm -c tierkit.yaml llama-3-8b/ --rank $RANK --world-size 4 --split megatron',
      "tierkit warm -c tierkit.yaml model.gguf --tensors 'blk.0.*' --tensors output.weight",
    ],
  },
  ls: {
    summary: 'list cached objects: key, size, state, last used, pinned',
    usage:
      'tierkit ls [PREFIX] [--check] [--by-prefix [--depth N]] [--older-than D] [--pinned] [--partial] [--sort key|size|used]',
    details: `  --check          compare each entry with the origin (state fresh/stale/gone instead of cached)
  --by-prefix      one line per prefix (the key's first --depth N folders, default 1) with totals
  --older-than D   only entries unused for D (what 'purge --older-than D' would drop, pins aside)
  --pinned         only pinned entries
  --partial        only objects filled in part (an interrupted warm, a rank's tensors): the bytes
                   and blocks present, and the share of the object they cover
  --sort WHAT      key (default), size (largest first) or used (least recently used first)
  --reverse        the other way round
States: cached (origin identity recorded), unknown (no origin identity), modified (changed
outside tierkit), partial N% (a partial copy: SIZE is the bytes present), and with --check: fresh, stale, gone.`,
    examples: [
      'tierkit ls --cache /var/cache/models',
      'tierkit ls llama-3-8b/ --check --origin s3://models --json',
      'tierkit ls --cache /var/cache/models --by-prefix --sort size',
      'tierkit ls --cache /var/cache/models --older-than 1w --sort used',
      'tierkit ls --lmcache /mnt/nvme/lmcache',
    ],
  },
  stat: {
    summary: 'show one cached object and its origin',
    usage: 'tierkit stat KEY …',
    details:
      'Prints size, state, last use, pin, stored checksum, and the origin size/ETag when --origin is given.',
    examples: ['tierkit stat --cache /var/cache/models --origin s3://models llama-3-8b/config.json'],
  },
  verify: {
    summary: 'check cached objects against stored checksums and the origin',
    usage: 'tierkit verify [KEY …] [--prefix P] [--drop] [--seal]',
    details: `Re-reads every entry (or the KEYs given) and compares its sha256 with the one recorded at warm
time, and its recorded origin size/ETag with the origin's (when --origin is given).
  --prefix P   only keys starting with P
  --drop       delete bad entries (they are fetched again on the next read or warm)
  --seal       record a checksum for entries that have none
Exit status 1 when any entry is bad (corrupt, modified, stale, gone).
With --lmcache DIR: entries LMCache would trip over (torn or truncated files, a .metadata without
its data or the reverse, a .metadata that differs from the header); exit status 1 when any.`,
    examples: [
      'tierkit verify --cache /var/cache/models --origin s3://models',
      'tierkit verify --cache /var/cache/models --drop --json',
      'LMCACHE_GDS_PATH=/mnt/nvme/lmcache tierkit verify --lmcache-config env',
    ],
  },
  purge: {
    summary: 'drop entries unused for a while and/or down to a byte budget (pinned ones stay)',
    usage: 'tierkit purge [--older-than DURATION] [--max-bytes SIZE] [--every DURATION]',
    details: `  --older-than D, --purge-unused-after D   drop entries unused for D (30s, 15m, 12h, 1d, 1w, 1h30m)
  --max-bytes SIZE                         then drop least recently used entries down to SIZE
  --every D, --check-unused-every D        keep running and purge every D (until SIGINT/SIGTERM)
  --metrics-port PORT                      with --every: serve Prometheus metrics on 127.0.0.1:PORT
  --dry-run                                list what would be purged, remove nothing
With --lmcache DIR: an LMCache GDS directory in place (a sidecar next to LMCache): least recently
used entries first, a file being written never touched, no .metadata left without its data or the
reverse (a missing one is written from the data's header), only what was removed reported.`,
    examples: [
      'tierkit purge --cache /var/cache/models --older-than 1w',
      'tierkit purge --cache /var/cache/models --older-than 1w --every 1d   # MLIS-style',
      'tierkit purge --cache /var/cache/models --max-bytes 400GiB',
      'tierkit purge --lmcache /mnt/nvme/lmcache --max-bytes 500GiB --every 1m --metrics-port 9464',
      'tierkit purge --lmcache-config lmcache.yaml --older-than 1d --dry-run',
    ],
  },
  rm: {
    summary: 'remove cached objects: keys, prefixes or globs (the origin is not touched)',
    usage: 'tierkit rm KEY|PREFIX/|GLOB … [--dry-run]',
    details: `Removes the cached copies (and their pins); the next read or warm fetches them again.
  --dry-run       list what would be removed
  --allow-empty   a name matching nothing cached is not an error (exit 1 by default)`,
    examples: [
      'tierkit rm --cache /var/cache/models llama-2-7b/',
      "tierkit rm --cache /var/cache/models 'llama-3-8b/*.bin' --dry-run --json",
    ],
  },
  pin: {
    summary: 'keep objects from eviction and purges (persists, shared by every process)',
    usage: 'tierkit pin KEY|PREFIX/|GLOB …',
    details: `A key can be pinned before it is cached. A prefix (llama-3-8b/) or glob pins what is cached under
it, and with --origin (or tiers:) what the origin has under it too. Pins live in <cache>/.tierkit/pins.`,
    examples: [
      'tierkit pin --cache /var/cache/models llama-3-8b/model-00001-of-00004.safetensors',
      'tierkit pin --cache /var/cache/models --origin s3://models llama-3-8b/',
    ],
  },
  unpin: {
    summary: 'let objects be evicted and purged again',
    usage: 'tierkit unpin KEY|PREFIX/|GLOB …',
    details:
      'A prefix or glob unpins what is cached under it (and with --origin what the origin has under it).',
    examples: [
      'tierkit unpin --cache /var/cache/models llama-3-8b/model-00001-of-00004.safetensors',
      'tierkit unpin --cache /var/cache/models llama-3-8b/',
    ],
  },
  bake: {
    summary: 'materialise a manifest into a directory for a container image (starts warm)',
    usage: 'tierkit bake --out DIR [KEY|PREFIX/|GLOB …] [--manifest FILE] [--pin]',
    details: `Writes a tier-fs cache root into DIR: plain files at their keys' paths plus .tierkit/ metadata
(origin size/ETag, sha256). Point the running container's --cache at DIR and it starts warm.
  -o, --out DIR   target directory (default: model.json's download_files_to)
  --pin           pin every baked object (never evicted or purged in the container)
Takes the warm options too.`,
    examples: [
      'tierkit bake --origin s3://models --out ./image/models llama-3-8b/ --pin',
      'RUN npx tierkit bake --origin s3://models --manifest model.json --out /var/cache/models   # Dockerfile',
    ],
  },
  cat: {
    summary: 'read objects through the stack (as an app would) to stdout or a file',
    usage: 'tierkit cat KEY … [--out FILE]',
    details: `A cached copy is served (checked against the origin as --validate says); a missing one is
fetched and kept. With --stale-if-error a cached copy is served when the origin cannot be reached.
  -o, --out FILE   write the object to FILE (one KEY)`,
    examples: [
      'tierkit cat --cache /var/cache/models --origin s3://models llama-3-8b/config.json',
      'tierkit cat -c tierkit.yaml --stale-if-error llama-3-8b/config.json -o config.json',
    ],
  },
  metrics: {
    summary: 'print Prometheus metrics of the cache (or serve them)',
    usage: 'tierkit metrics [--metrics-port PORT]',
    details: `Prints the cache's gauges (bytes, entries, pins) and counters in Prometheus text format.
  --metrics-port PORT   serve /metrics on 127.0.0.1:PORT until SIGINT/SIGTERM instead`,
    examples: [
      'tierkit metrics --cache /var/cache/models',
      'tierkit metrics --cache /var/cache/models --metrics-port 9464',
    ],
  },
};

export function mainHelp(): string {
  const width = Math.max(...Object.keys(HELP).map((c) => c.length));
  return `tierkit — pre-warm, verify, bake and purge tierkit caches

Usage: tierkit <command> [options]

Commands:
${Object.entries(HELP)
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
  -q, --quiet          print nothing but errors and warnings (--json still prints its document)
  --progress MODE      bar, plain or none (default: bar on a terminal, plain otherwise)
  --disable-cache      bypass the cache and use the origin directly (TIERKIT_DISABLE_CACHE=1)
  --lmcache DIR[,DIR]  ls, stat, verify, purge, metrics: an LMCache GDS cache directory (gds_path)
                       in place (TIERKIT_LMCACHE); needs @tierkit/tier-gds
  --lmcache-config FILE|env   the same, gds_path from an LMCache YAML file and LMCACHE_* variables
                       ('env': LMCACHE_CONFIG_FILE, LMCACHE_GDS_PATH … only)
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

export function commandHelp(name: string, c: CommandHelp = HELP[name]!): string {
  return `tierkit ${name} — ${c.summary}

Usage: ${c.usage} [--cache URL] [--origin URL] [--config FILE] [--json]

${c.details ? `${c.details}\n\n` : ''}Examples:
${c.examples.map((e) => `  ${e}`).join('\n')}

See 'tierkit --help' for the stack options and environment variables.
`;
}
