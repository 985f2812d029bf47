export function makeObject(key: string, version: string | number, size: number): Uint8Array;
export function verifyObject(
  bytes: Uint8Array,
  key?: string,
): { ok: true; version: string; size: number } | { ok: false; reason: string; version?: undefined };
export function sleep(ms: number): Promise<void>;
export function verifyHead(
  head: Uint8Array,
  key: string,
): { ok: true; version: string; size: number } | { ok: false; reason: string; version?: undefined };
