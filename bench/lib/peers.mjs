// The tools tierkit is compared with. Missing command-line peers are installed
// once from Debian's packages when we run as root; whatever is still missing is
// skipped, and the suites say so.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

const APT = { aws: 'awscli', rclone: 'rclone', fio: 'fio' };
let cached;

function which(cmd) {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

function version(path, args) {
  const r = spawnSync(path, args, { encoding: 'utf8', env: { ...process.env, AWS_CA_BUNDLE: '' } });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0].trim();
}

function locate() {
  // /usr/bin/aws is Debian's awscli v2; an `aws` elsewhere on PATH (pyenv's v1, say) is a last resort.
  return {
    aws: existsSync('/usr/bin/aws') ? '/usr/bin/aws' : which('aws'),
    rclone: which('rclone'),
    fio: which('fio'),
  };
}

/**
 * Finds the peers: `{ aws, rclone, fio }` (absolute paths or null), `opendal`
 * (the module or null), `versions`, `installed` (what this run installed) and
 * `skipped` ({ name, why }[]). Runs apt-get at most once per process.
 */
export function findPeers(log = () => {}) {
  if (cached) return cached;
  let paths = locate();
  const installed = [];
  const missing = Object.keys(APT).filter((k) => !paths[k]);
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  let aptNote;
  if (missing.length > 0 && isRoot && process.env.BENCH_NO_INSTALL !== '1') {
    const pkgs = missing.map((k) => APT[k]);
    log(`installing missing peers with apt-get: ${pkgs.join(' ')}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const upd = spawnSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env });
    const inst = spawnSync('apt-get', ['install', '-y', '-qq', ...pkgs], { stdio: 'ignore', env });
    if (upd.status !== 0 || inst.status !== 0) aptNote = `apt-get install ${pkgs.join(' ')} failed`;
    const after = locate();
    for (const k of missing) if (after[k]) installed.push(k);
    paths = after;
  }
  const skipped = [];
  for (const k of Object.keys(APT)) {
    if (!paths[k]) {
      const why = isRoot
        ? (aptNote ?? `apt-get did not provide ${APT[k]}`)
        : `not installed and not root (apt-get install ${APT[k]})`;
      skipped.push({ name: k, why });
    }
  }
  const versions = {};
  if (paths.aws) versions.aws = version(paths.aws, ['--version']);
  if (paths.rclone) versions.rclone = version(paths.rclone, ['version']);
  if (paths.fio) versions.fio = version(paths.fio, ['--version']);
  let opendal = null;
  try {
    const require = createRequire(import.meta.url);
    opendal = require('opendal');
    versions.opendal = require('opendal/package.json').version;
  } catch (err) {
    skipped.push({
      name: 'opendal',
      why: `cannot load opendal (npm install -w @tierkit/bench -D opendal@0.49.2): ${err.message.split('\n')[0]}`,
    });
  }
  cached = { ...paths, opendal, versions, installed, skipped };
  return cached;
}

/** A markdown paragraph naming the peers used, installed and skipped. */
export function peersMarkdown(peers) {
  const used = Object.entries(peers.versions).map(([k, v]) => `${k} (${v})`);
  let md = `Peers: ${used.length ? used.join(', ') : 'none'}.`;
  if (peers.installed.length) md += ` Installed by this run: ${peers.installed.join(', ')}.`;
  if (peers.skipped.length) md += ` Skipped: ${peers.skipped.map((s) => `${s.name} (${s.why})`).join('; ')}.`;
  return md;
}
