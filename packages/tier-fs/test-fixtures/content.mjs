// Self-describing test objects: a header naming the key, version and size,
// then a pattern seeded by (key, version). A reader can verify any object it
// gets without knowing which write produced it.
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function seedOf(text) {
  // FNV-1a, 32-bit.
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h || 1;
}

/** The bytes of version `version` of `key`, `size` bytes long (at least the header). */
export function makeObject(key, version, size) {
  const header = encoder.encode(`TKOBJ ${JSON.stringify(key)} ${version} ${size}\n`);
  const words = new Uint32Array(Math.ceil(Math.max(size, header.byteLength) / 4));
  let x = seedOf(`${key}#${version}`);
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  const out = new Uint8Array(words.buffer, 0, Math.max(size, header.byteLength));
  out.set(header);
  return out;
}

/** Checks `bytes` is a complete, byte-exact object of `key`; returns its version or a reason it is not. */
export function verifyObject(bytes, key) {
  const nl = bytes.indexOf(10);
  if (nl < 0 || nl > 2000) return { ok: false, reason: 'no header' };
  const m = /^TKOBJ (".*") (\S+) (\d+)$/.exec(decoder.decode(bytes.subarray(0, nl)));
  if (!m) return { ok: false, reason: 'bad header' };
  const gotKey = JSON.parse(m[1]);
  if (key !== undefined && gotKey !== key) return { ok: false, reason: `header names ${gotKey}, not ${key}` };
  const size = Number(m[3]);
  if (bytes.byteLength !== size)
    return { ok: false, reason: `size ${bytes.byteLength}, header says ${size}` };
  const want = makeObject(gotKey, m[2], size);
  if (
    Buffer.compare(Buffer.from(want), Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)) !== 0
  ) {
    return { ok: false, reason: 'content differs from the pattern' };
  }
  return { ok: true, version: m[2], size };
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Checks the first bytes of an object (as a readInto from offset 0 returns them). */
export function verifyHead(head, key) {
  const nl = head.indexOf(10);
  if (nl < 0) return { ok: false, reason: 'no header in the head' };
  const m = /^TKOBJ (".*") (\S+) (\d+)$/.exec(decoder.decode(head.subarray(0, nl)));
  if (!m || JSON.parse(m[1]) !== key) return { ok: false, reason: 'bad header in the head' };
  const want = makeObject(key, m[2], Number(m[3])).subarray(0, head.byteLength);
  if (Buffer.compare(Buffer.from(want), Buffer.from(head)) !== 0)
    return { ok: false, reason: 'head differs' };
  return { ok: true, version: m[2], size: Number(m[3]) };
}
