// Parses HCL files offline with @cdktf/hcl2json and prints one JSON object,
// {"<path as given>": <its blocks>}; a syntax error exits 1 naming the file.
// Used by test_terraform.py, as terraform itself cannot run without its
// providers.
'use strict';
const fs = require('fs');
const path = require('path');
const { parse } = require('@cdktf/hcl2json');

async function main(files) {
  const out = {};
  for (const f of files) {
    out[f] = await parse(path.basename(f), fs.readFileSync(f, 'utf8'));
  }
  process.stdout.write(JSON.stringify(out));
}

main(process.argv.slice(2)).catch((e) => {
  process.stderr.write(String(e && e.message ? e.message : e) + '\n');
  process.exit(1);
});
