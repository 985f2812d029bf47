#!/usr/bin/env node
'use strict';
// The `tierkit` bin. libuv sizes its threadpool when it is first used, and Node's ESM loader
// already uses it to read an .mjs entry: so this CommonJS file (loaded with synchronous reads)
// sets the size first, then loads the ESM entry. A fill takes ~50 filesystem steps and a few
// fsyncs per object on that pool (4 threads by default), so warms of many objects queue on it.
// A UV_THREADPOOL_SIZE the user set stands.
if (!process.env.UV_THREADPOOL_SIZE) {
  const cores = require('node:os').availableParallelism();
  process.env.UV_THREADPOOL_SIZE = String(Math.min(64, Math.max(8, 4 * cores)));
}
import('./tierkit.mjs');
