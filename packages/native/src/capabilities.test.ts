import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { capabilities, DeviceBuffer, loadAddon, NativeError } from './index.js';

describe('capabilities', () => {
  it('loads the addon built by npm install', () => {
    // Libraries load once per process, so this test must not load them with default paths.
    expect(loadAddon()).toBeDefined();
  });

  it('reports missing vendor libraries with the reason, without throwing', () => {
    const caps = capabilities({
      cufile: '/nonexistent/libcufile.so.0',
      hf3fs: '/nonexistent/libhf3fs_api_shared.so',
    });
    expect(caps.pool).toBe(true);
    expect(caps.cufile).toMatchObject({ available: false, tried: true });
    expect(caps.cufile.reason).toMatch(/nonexistent\/libcufile\.so\.0/);
    expect(caps.hf3fs.available).toBe(false);
    expect(caps.hf3fs.reason).toMatch(/libhf3fs_api_shared\.so/);
    if (!existsSync('/dev/nvidia0')) {
      // No GPU here: the driver is missing or sees no device, and says so.
      expect(caps.cuda.available).toBe(false);
      expect(caps.cuda.reason).toMatch(/libcuda|cuInit|device/);
      expect(caps.cuda.deviceCount).toBe(0);
    }
  });

  it('refuses device memory with a typed UNAVAILABLE error where there is no GPU', () => {
    if (capabilities().cuda.available) return; // the GPU test covers this machine
    let caught: unknown;
    try {
      DeviceBuffer.alloc(4096);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(NativeError);
    expect((caught as NativeError).code).toBe('UNAVAILABLE');
  });
});

describe('without the addon', () => {
  afterEach(() => {
    delete process.env.TIERKIT_NATIVE_ADDON;
    vi.resetModules();
  });

  it('still loads and says why the addon is missing', async () => {
    process.env.TIERKIT_NATIVE_ADDON = '/nonexistent/tierkit_native.node';
    vi.resetModules();
    const fresh = await import('./index.js');
    const caps = fresh.capabilities();
    expect(caps.addon.loaded).toBe(false);
    expect(caps.addon.reason).toMatch(/nonexistent/);
    expect(caps.pool).toBe(false);
    expect(caps.cuda.available).toBe(false);
    expect(caps.hf3fs.reason).toMatch(/nonexistent/);
    expect(() => new fresh.IoPool()).toThrow(/nonexistent/);
  });
});
