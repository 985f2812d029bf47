// The package as a user installs it: packed into a tarball, installed into a fresh project
// on a PATH with no C/C++ compiler and no make (a machine image without build tools).
// With the prebuilt binary in the tarball the addon loads from prebuilds/ (whether or not
// install scripts run); with it removed, the install still succeeds, prints the one-line
// notice, and the package works without the addon.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)));
const target = `${process.platform}-${process.arch}`;
const npmCli = join(dirname(dirname(process.execPath)), 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');

function onPath(command: string, path = process.env.PATH ?? ''): boolean {
  return path.split(delimiter).some((dir) => dir && existsSync(join(dir, command)));
}

function skipReason(): string | undefined {
  if (process.platform !== 'linux' || !['x64', 'arm64'].includes(process.arch)) {
    return `prebuilds are made for linux-x64 and linux-arm64, not ${target}`;
  }
  if (!existsSync(join(packageDir, 'dist', 'index.js'))) return 'dist/ is not built (npm run build)';
  if (!existsSync(npmCli)) return `npm is not at ${npmCli}`;
  if (!onPath('g++') || !onPath('make')) return 'no compiler here to make the prebuilt binary';
  return undefined;
}
const skip = skipReason();

let work: string;
let noCompilerPath: string;
let withPrebuild: string;
let withoutPrebuild: string;

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: 120_000 });
  return {
    status: r.status,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? '',
    output: `${r.stdout}\n${r.stderr}`,
  };
}

/** Packs a copy of the package (what `files` ships), with or without its prebuilds. */
function pack(stage: string, prebuilds: boolean): string {
  for (const f of [
    'package.json',
    'LICENSE',
    'README.md',
    'binding.gyp',
    'dist',
    'csrc',
    'scripts',
    'test-fixtures',
  ]) {
    cpSync(join(packageDir, f), join(stage, f), { recursive: true });
  }
  if (prebuilds) {
    const r = run(process.execPath, [join(stage, 'scripts', 'prebuild.mjs'), `--targets=${target}`], stage);
    if (r.status !== 0) throw new Error(`prebuild failed:\n${r.output}`);
  }
  const out = run(
    process.execPath,
    [npmCli, 'pack', '--ignore-scripts', '--silent', '--pack-destination', work],
    stage,
  );
  if (out.status !== 0) throw new Error(`npm pack failed:\n${out.output}`);
  const tgz = join(work, out.stdout.trim().split('\n').pop()!);
  const renamed = tgz.replace(/\.tgz$/, prebuilds ? '-prebuilt.tgz' : '-bare.tgz');
  cpSync(tgz, renamed);
  rmSync(tgz);
  return renamed;
}

/** npm install of the tarball into a fresh project, by default with PATH holding only node and sh. */
function install(
  tarball: string,
  { allowScripts, compiler = false }: { allowScripts?: Record<string, boolean>; compiler?: boolean } = {},
) {
  const project = mkdtempSync(join(work, 'project-'));
  const manifest = {
    name: 'app',
    version: '1.0.0',
    private: true,
    ...(allowScripts ? { allowScripts } : {}),
  };
  writeFileSync(join(project, 'package.json'), JSON.stringify(manifest));
  const args = ['install', tarball, '--foreground-scripts', '--prefer-offline', '--no-audit', '--no-fund'];
  const env = compiler ? process.env : { ...process.env, PATH: noCompilerPath, CC: '', CXX: '' };
  const r = run(process.execPath, [npmCli, ...args], project, env);
  return { project, ...r };
}

/** Runs ESM in the project with the same bare PATH; prints what the script writes. */
function inProject(project: string, code: string) {
  return run(process.execPath, ['--input-type=module', '-e', code], project, {
    ...process.env,
    PATH: noCompilerPath,
  });
}

describe.skipIf(skip)(
  `the packed tarball on a machine without a compiler${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    beforeAll(() => {
      // Under build/ so the prebuild's node-gyp finds node-addon-api up the tree.
      mkdirSync(join(packageDir, 'build'), { recursive: true });
      work = mkdtempSync(join(packageDir, 'build', 'pack-test-'));
      const bin = join(work, 'bin');
      mkdirSync(bin);
      symlinkSync(process.execPath, join(bin, 'node'));
      symlinkSync('/bin/sh', join(bin, 'sh'));
      noCompilerPath = bin;
      withPrebuild = pack(mkdtempSync(join(work, 'stage-')), true);
      withoutPrebuild = pack(mkdtempSync(join(work, 'stage-')), false);
    }, 180_000);
    afterAll(() => {
      if (work) rmSync(work, { recursive: true, force: true });
    });

    it('really has no compiler on the PATH it installs with', () => {
      for (const tool of ['cc', 'c++', 'gcc', 'g++', 'make', 'python3']) {
        expect(onPath(tool, noCompilerPath), tool).toBe(false);
      }
      expect(onPath('node', noCompilerPath)).toBe(true);
    });

    it('ships the prebuilt binary for this machine and no build output', () => {
      const listing = run('tar', ['-tzf', withPrebuild], work).stdout.split('\n');
      expect(listing).toContain(`package/prebuilds/${target}/tierkit_native.glibc.node`);
      expect(listing.some((f) => f.startsWith('package/build/'))).toBe(false);
    });

    it('loads the addon from the prebuild; the install script compiles nothing', { timeout: 60_000 }, () => {
      const r = install(withPrebuild);
      expect(r.status, r.output).toBe(0);
      expect(r.output).toContain(`@tierkit/native: using the prebuilt addon for ${target}`);
      const installed = join(r.project, 'node_modules', '@tierkit', 'native');
      expect(existsSync(join(installed, 'build'))).toBe(false);
      const probe = inProject(
        r.project,
        `import { capabilities, cachedRead, IoPool } from '@tierkit/native';
       import { openSync, writeFileSync } from 'node:fs';
       writeFileSync('f', 'hello');
       const fd = openSync('f', 'r');
       const buf = new Uint8Array(5);
       const pool = new IoPool({ threads: 2 });
       const n = await pool.read(fd, buf, 0);
       pool.close();
       const a = capabilities().addon;
       console.log(JSON.stringify({ ...a, cachedRead: typeof cachedRead(), n, text: Buffer.from(buf).toString() }));`,
      );
      expect(probe.status, probe.output).toBe(0);
      expect(probe.stderr).not.toContain('native addon unavailable');
      const got = JSON.parse(probe.stdout);
      expect(got).toMatchObject({
        loaded: true,
        source: 'prebuild',
        cachedRead: 'function',
        n: 5,
        text: 'hello',
      });
      expect(got.path).toBe(join(installed, 'prebuilds', target, 'tierkit_native.glibc.node'));
    });

    it('needs no install script when a prebuild matches: denied by allowScripts, npm 11 neither runs nor warns', {
      timeout: 60_000,
    }, () => {
      // What `npm install-scripts deny @tierkit/native` writes for a tarball dependency.
      const r = install(withPrebuild, { allowScripts: { [`file:${withPrebuild}`]: false } });
      expect(r.status, r.output).toBe(0);
      expect(r.output).not.toContain('install scripts not yet covered');
      expect(r.output).not.toContain('@tierkit/native: using the prebuilt addon');
      const probe = inProject(
        r.project,
        `import { capabilities } from '@tierkit/native'; console.log(JSON.stringify(capabilities().addon));`,
      );
      expect(JSON.parse(probe.stdout)).toMatchObject({ loaded: true, source: 'prebuild' });
    });

    it('without a prebuild, the script denied: the notice names a build that runs (npm rebuild does not)', {
      timeout: 180_000,
    }, () => {
      const r = install(withoutPrebuild, {
        allowScripts: { [`file:${withoutPrebuild}`]: false },
        compiler: true,
      });
      expect(r.status, r.output).toBe(0);
      expect(r.output).not.toContain('addon built');
      const probe = (project: string) =>
        inProject(
          project,
          `import { capabilities } from '@tierkit/native'; console.log(JSON.stringify(capabilities().addon));`,
        );
      const before = probe(r.project);
      expect(JSON.parse(before.stdout)).toMatchObject({ loaded: false });
      const command = /then `(npm explore @tierkit\/native -- npm run build:native)`/.exec(
        before.stderr,
      )?.[1];
      expect(command, before.stderr).toBeDefined();
      // npm 11 skips a denied install script on rebuild too, silently: advice to rebuild would do nothing.
      const rebuild = run(
        process.execPath,
        [npmCli, 'rebuild', '@tierkit/native', '--foreground-scripts'],
        r.project,
      );
      expect(rebuild.status, rebuild.output).toBe(0);
      expect(JSON.parse(probe(r.project).stdout)).toMatchObject({ loaded: false });
      const build = run(process.execPath, [npmCli, ...command!.split(' ').slice(1)], r.project);
      expect(build.status, build.output).toBe(0);
      expect(JSON.parse(probe(r.project).stdout)).toMatchObject({ loaded: true, source: 'build' });
    });

    it('without a prebuild but with a compiler: builds the addon at install', { timeout: 180_000 }, () => {
      const r = install(withoutPrebuild, { compiler: true });
      expect(r.status, r.output).toBe(0);
      expect(r.output).toContain(`@tierkit/native: addon built for ${target}`);
      const probe = inProject(
        r.project,
        `import { capabilities, cachedRead } from '@tierkit/native';
       console.log(JSON.stringify({ ...capabilities().addon, cachedRead: typeof cachedRead() }));`,
      );
      expect(JSON.parse(probe.stdout)).toMatchObject({
        loaded: true,
        source: 'build',
        cachedRead: 'function',
      });
    });

    it('without a prebuild or compiler: installs, prints one notice, and works without the addon', {
      timeout: 60_000,
    }, () => {
      const r = install(withoutPrebuild);
      expect(r.status, r.output).toBe(0);
      const notices = r.output.split('\n').filter((l) => l.includes('native addon unavailable'));
      expect(notices).toHaveLength(1);
      expect(notices[0]).toMatch(/no compiler to build one \(.*g\+\+.*make.* not on PATH\)/);
      const probe = inProject(
        r.project,
        `import * as n from '@tierkit/native';
       import { readFileSync } from 'node:fs';
       const caps = n.capabilities();
       let pool;
       try { new n.IoPool(); } catch (e) { pool = { name: e.name, code: e.code }; }
       const built = JSON.parse(readFileSync('node_modules/@tierkit/native/build/failed.json', 'utf8'));
       console.log(JSON.stringify({
         addon: caps.addon, pool, cachedRead: typeof n.cachedRead(), cuda: caps.cuda.available,
         oDirect: n.oDirectFlag(), atInstall: n.unavailableNotice(built.reason),
         atRun: n.unavailableNotice(caps.addon.reason),
       }));`,
      );
      expect(probe.status, probe.output).toBe(0);
      const got = JSON.parse(probe.stdout);
      expect(got.addon.loaded).toBe(false);
      expect(got.addon.reason).toMatch(new RegExp(`no prebuilt addon for ${target}, and no compiler`));
      expect(got).toMatchObject({
        pool: { name: 'NativeError', code: 'UNAVAILABLE' },
        cachedRead: 'undefined',
      });
      expect(got).toMatchObject({ cuda: false, oDirect: 0 });
      // The install printed the package's own notice; a process that needs the addon prints it once.
      expect(notices[0]).toBe(got.atInstall);
      const runtime = probe.stderr.split('\n').filter((l) => l.includes('native addon unavailable'));
      expect(runtime).toEqual([got.atRun]);
      expect(got.atRun).toMatch(/tier-fs .* tier-gds uses POSIX I\/O .* tier-3fs uses its FUSE mount/);
    });
  },
);
