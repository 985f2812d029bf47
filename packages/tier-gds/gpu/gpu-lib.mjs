// GPU checks and the throughput comparison for tier-gds. Needs a CUDA GPU; on a
// machine without one every function returns { skipped: reason }.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GDS_HEADER_SIZE as LMCACHE_HEADER_SIZE } from '@tierkit/lmcache';
import { capabilities, DeviceBuffer } from '@tierkit/native';
import { GdsTier } from '@tierkit/tier-gds';

export function gpuSkipReason() {
  const caps = capabilities();
  if (!caps.addon.loaded) return `native addon not loaded: ${caps.addon.reason}`;
  if (!caps.cuda.available) return `no CUDA device: ${caps.cuda.reason}`;
  return undefined;
}

async function sameBytes(buf, expected) {
  const back = await buf.toHost(0, expected.byteLength);
  return Buffer.from(back).equals(expected);
}

/** cuFile into device memory byte-exact, POSIX fallback on tmpfs, and the mode each took. */
export async function correctness({ dir, size = 64 * 1024 * 1024 }) {
  const skip = gpuSkipReason();
  if (skip) return { skipped: skip };
  const data = randomBytes(size);
  const results = {};
  const cases = [
    ['cufile', { gdsPath: join(dir, 'gds'), useCufile: 'on' }],
    ['auto', { gdsPath: join(dir, 'gds'), useCufile: 'auto' }],
    ['posix-off', { gdsPath: join(dir, 'gds'), useCufile: 'off' }],
    ['auto-on-tmpfs', { gdsPath: '/dev/shm/tierkit-gds-test', useCufile: 'auto' }],
  ];
  for (const [name, opts] of cases) {
    let tier;
    try {
      tier = new GdsTier(opts);
    } catch (err) {
      results[name] = { error: String(err.message) };
      continue;
    }
    await tier.ready;
    await tier.write('kv/chunk-0', data);
    const buf = DeviceBuffer.alloc(size + 4096);
    try {
      buf.fill(0);
      const n = await tier.readIntoDevice('kv/chunk-0', buf);
      const exact = n === size && (await sameBytes(buf, data));
      // A range at an unaligned object offset into an offset in device memory.
      const m = await tier.readIntoDevice('kv/chunk-0', buf, {
        offset: 12345,
        length: 1_000_000,
        deviceOffset: 4096,
      });
      const part = await buf.toHost(4096, 1_000_000);
      const rangeExact = m === 1_000_000 && Buffer.from(part).equals(data.subarray(12345, 12345 + 1_000_000));
      results[name] = { mode: tier.mode, exact, rangeExact };
    } catch (err) {
      results[name] = { mode: tier.mode, error: String(err.message), cufileCode: err.cause?.cufileCode };
    } finally {
      buf.free();
      await tier.close();
    }
  }
  rmSync('/dev/shm/tierkit-gds-test', { recursive: true, force: true });
  return results;
}

function gbps(bytes, ms) {
  return Math.round((bytes / 1e9 / (ms / 1000)) * 100) / 100;
}

async function timeIt(runs, fn) {
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await fn();
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Median read throughput of the same bytes into GPU memory, four ways, in one run. */
export async function throughput({ dir, size = 1024 * 1024 * 1024, runs = 5, python = 'python3' }) {
  const skip = gpuSkipReason();
  if (skip) return { skipped: skip };
  mkdirSync(dir, { recursive: true });
  const data = randomBytes(size);
  const cu = new GdsTier({ gdsPath: join(dir, 'gds'), useCufile: 'auto', cufileBufferSize: 64 });
  const px = new GdsTier({ gdsPath: join(dir, 'gds'), useCufile: 'off', cufileBufferSize: 64 });
  await cu.ready;
  await cu.write('bench/chunk', data);
  const file = cu.layout.paths('bench/chunk')[0];
  const buf = DeviceBuffer.alloc(size);
  const rows = [];
  try {
    const cuMs = await timeIt(runs, () => cu.readIntoDevice('bench/chunk', buf));
    rows.push({ method: `tier-gds readIntoDevice (${cu.mode.device})`, ms: cuMs, GBps: gbps(size, cuMs) });
    const pxMs = await timeIt(runs, () => px.readIntoDevice('bench/chunk', buf));
    rows.push({
      method: 'tier-gds POSIX: pread (native pool) + cuMemcpyHtoD',
      ms: pxMs,
      GBps: gbps(size, pxMs),
    });
  } finally {
    buf.free();
    await cu.close();
    await px.close();
  }
  // PyTorch on the same bytes: raw frombuffer(...).cuda(), and safetensors.load_file to CUDA.
  const st = join(dir, 'same.safetensors');
  writeFileSync(
    join(dir, 'torch_bench.py'),
    `import json, sys, time, torch
path, off, size, runs, st = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def med(f):
    ts = []
    for _ in range(runs):
        torch.cuda.synchronize(); t = time.perf_counter(); f(); torch.cuda.synchronize(); ts.append(time.perf_counter() - t)
    ts.sort(); return ts[len(ts) // 2] * 1000
def raw():
    with open(path, 'rb') as fh:
        fh.seek(off); b = bytearray(fh.read(size))
    torch.frombuffer(b, dtype=torch.uint8).cuda()
out = {'torch.frombuffer + .cuda()': med(raw)}
try:
    from safetensors.torch import load_file, save_file
    with open(path, 'rb') as fh:
        fh.seek(off); t = torch.frombuffer(bytearray(fh.read(size)), dtype=torch.uint8)
    save_file({'kv': t}, st)
    out['safetensors.load_file(device=cuda)'] = med(lambda: load_file(st, device='cuda'))
except Exception as e:
    out['safetensors'] = 'unavailable: ' + str(e)
print(json.dumps(out))
`,
  );
  const py = spawnSync(
    python,
    [join(dir, 'torch_bench.py'), file, String(LMCACHE_HEADER_SIZE), String(size), String(runs), st],
    { encoding: 'utf8' },
  );
  if (py.status === 0) {
    for (const [method, ms] of Object.entries(JSON.parse(py.stdout.trim().split('\n').pop()))) {
      rows.push(
        typeof ms === 'number'
          ? { method: `PyTorch: ${method}`, ms, GBps: gbps(size, ms) }
          : { method, note: ms },
      );
    }
  } else rows.push({ method: 'PyTorch', note: `failed: ${py.stderr.slice(-500)}` });
  return { size, runs, rows, note: 'page cache is warm after the first run for every method alike' };
}

export function markdown(result) {
  if (result.skipped) return `Skipped: ${result.skipped}\n`;
  const lines = ['| method | median ms | GB/s |', '| --- | ---: | ---: |'];
  for (const r of result.rows)
    lines.push(`| ${r.method} | ${r.ms?.toFixed(1) ?? ''} | ${r.GBps ?? r.note ?? ''} |`);
  return `${(result.size / 2 ** 20).toFixed(0)} MiB into GPU memory, median of ${result.runs} runs.\n\n${lines.join('\n')}\n`;
}
