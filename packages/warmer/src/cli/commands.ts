/** The `tierkit` commands: their options and what runs them (their help is in help.ts). */
import { cmdLs, cmdMetrics, cmdPin, cmdPurge, cmdStat, cmdVerify } from './cache-cmds.js';
import { LMCACHE_OPTIONS } from './lmcache-cmds.js';
import { cmdRm } from './rm-cmd.js';
import type { CommandSpec } from './shared.js';
import { cmdBake, cmdCat, cmdWarm, TENSOR_OPTIONS, WARM_ONLY_OPTIONS, WARM_OPTIONS } from './warm-cmds.js';

export const COMMANDS: Record<string, CommandSpec> = {
  warm: {
    options: { ...WARM_OPTIONS, ...WARM_ONLY_OPTIONS, ...TENSOR_OPTIONS },
    run: cmdWarm,
  },
  ls: {
    options: {
      check: { type: 'boolean' },
      'by-prefix': { type: 'boolean' },
      depth: { type: 'string' },
      'older-than': { type: 'string' },
      pinned: { type: 'boolean' },
      partial: { type: 'boolean' },
      sort: { type: 'string' },
      reverse: { type: 'boolean' },
      ...LMCACHE_OPTIONS,
    },
    run: cmdLs,
  },
  stat: {
    options: { ...LMCACHE_OPTIONS },
    run: cmdStat,
  },
  verify: {
    options: {
      prefix: { type: 'string' },
      drop: { type: 'boolean' },
      seal: { type: 'boolean' },
      ...LMCACHE_OPTIONS,
    },
    run: cmdVerify,
  },
  purge: {
    options: {
      'older-than': { type: 'string' },
      'purge-unused-after': { type: 'string' },
      'max-bytes': { type: 'string' },
      every: { type: 'string' },
      'check-unused-every': { type: 'string' },
      'metrics-port': { type: 'string' },
      'dry-run': { type: 'boolean' },
      ...LMCACHE_OPTIONS,
    },
    noArguments: true,
    run: cmdPurge,
  },
  rm: {
    options: { 'dry-run': { type: 'boolean' }, 'allow-empty': { type: 'boolean' } },
    run: cmdRm,
  },
  pin: {
    options: {},
    run: (ctx) => cmdPin(ctx, true),
  },
  unpin: {
    options: {},
    run: (ctx) => cmdPin(ctx, false),
  },
  bake: {
    options: { ...WARM_OPTIONS, out: { type: 'string', short: 'o' }, pin: { type: 'boolean' } },
    run: cmdBake,
  },
  cat: {
    options: { out: { type: 'string', short: 'o' } },
    run: cmdCat,
  },
  metrics: {
    options: { 'metrics-port': { type: 'string' }, ...LMCACHE_OPTIONS },
    noArguments: true,
    run: cmdMetrics,
  },
};
