// Our ABI declarations (csrc/abi.h) against the real cufile.h, where one can be found.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cc, packageDir } from './test-utils.js';

function findCufileInclude(): string | undefined {
  const dirs = [
    process.env.TIERKIT_CUFILE_INCLUDE,
    '/usr/local/cuda/include',
    '/usr/include',
    '/usr/local/cuda/targets/x86_64-linux/include',
  ];
  const py = spawnSync('python3', [
    '-c',
    'import nvidia, os; print("\\n".join(os.path.join(p, d, "include") for p in nvidia.__path__ for d in ("cufile", "cu13", "cu12")))',
  ]);
  if (py.status === 0) dirs.push(...py.stdout.toString().trim().split('\n'));
  return dirs.find((d) => d && existsSync(join(d, 'cufile.h')));
}

const compiler = cc();
const cufileInclude = findCufileInclude();
const cudaInclude = ['/usr/local/cuda/include', cufileInclude].find(
  (d) => d && existsSync(join(d, 'cuda.h')),
);

describe('ABI declarations', () => {
  it.skipIf(!compiler)(
    "lay out the 3FS USRBIO structs field for field as 3FS's header (declared apart)",
    () => {
      const r = spawnSync(
        compiler!,
        ['-std=c11', '-fsyntax-only', join(packageDir, 'test-fixtures', 'abi-vs-usrbio.c')],
        {
          encoding: 'utf8',
        },
      );
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
    },
  );

  it.skipIf(!compiler)('compile as C with their layout asserts', () => {
    const r = spawnSync(
      compiler!,
      ['-std=c11', '-fsyntax-only', '-x', 'c', join(packageDir, 'csrc', 'abi.h')],
      {
        encoding: 'utf8',
      },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  const reason = !compiler
    ? 'no compiler'
    : !cufileInclude
      ? 'cufile.h not found (install libcufile-dev or set TIERKIT_CUFILE_INCLUDE)'
      : !cudaInclude
        ? 'cuda.h not found'
        : '';
  it.skipIf(reason !== '')(`match the real cufile.h${reason ? ` — skipped: ${reason}` : ''}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'tierkit-abi-'));
    const src = join(dir, 'check.cc');
    writeFileSync(
      src,
      `#include <cstddef>
#include <type_traits>
#include "cufile.h"
#include "abi.h"
static_assert(sizeof(CUfileError_t) == sizeof(tk_CUfileError_t), "CUfileError_t");
static_assert(offsetof(CUfileError_t, cu_err) == offsetof(tk_CUfileError_t, cu_err), "cu_err");
static_assert(sizeof(CUfileDescr_t) == sizeof(tk_CUfileDescr_t), "CUfileDescr_t");
static_assert(offsetof(CUfileDescr_t, handle) == offsetof(tk_CUfileDescr_t, handle), "handle");
static_assert(offsetof(CUfileDescr_t, fs_ops) == offsetof(tk_CUfileDescr_t, fs_ops), "fs_ops");
static_assert(sizeof(CUdeviceptr) == sizeof(tk_CUdeviceptr), "CUdeviceptr");
static_assert(CU_FILE_INTERNAL_ERROR == TK_CU_FILE_INTERNAL_ERROR, "5030");
static_assert(CU_FILE_CUDA_DRIVER_ERROR == TK_CU_FILE_CUDA_DRIVER_ERROR, "5011");
static_assert(CU_FILE_HANDLE_TYPE_OPAQUE_FD == TK_CU_FILE_HANDLE_TYPE_OPAQUE_FD, "fd type");
static_assert(CUFILEOP_BASE_ERR == TK_CUFILEOP_BASE_ERR, "base");
// Same parameter and return shapes, modulo our opaque typedefs.
static_assert(sizeof(decltype(cuFileRead(nullptr, nullptr, 0, 0, 0))) == sizeof(ssize_t), "cuFileRead");
static_assert(std::is_same<decltype(&cuFileRead), ssize_t (*)(CUfileHandle_t, void *, size_t, off_t, off_t)>::value, "read");
static_assert(std::is_same<decltype(&cuFileWrite), ssize_t (*)(CUfileHandle_t, const void *, size_t, off_t, off_t)>::value, "write");
static_assert(std::is_same<decltype(&cuFileBufRegister), CUfileError_t (*)(const void *, size_t, int)>::value, "bufreg");
static_assert(std::is_same<decltype(&cuFileHandleRegister), CUfileError_t (*)(CUfileHandle_t *, CUfileDescr_t *)>::value, "hreg");
int main() { return 0; }
`,
    );
    const args = [
      '-std=c++17',
      '-fsyntax-only',
      `-I${cufileInclude}`,
      `-I${cudaInclude}`,
      `-I${join(packageDir, 'csrc')}`,
      src,
    ];
    const r = spawnSync(compiler!.includes('clang') ? 'clang++' : 'g++', args, { encoding: 'utf8' });
    rmSync(dir, { recursive: true, force: true });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
