#!/usr/bin/env node
// Validates an AsyncAPI document with the official parser (@asyncapi/parser).
//   node validate.js FILE
// Prints every diagnostic (severity, path, message) and exits 1 when any is an error or a
// warning, 2 when the file cannot be read; 0 means the parser found nothing to say.
'use strict';

const fs = require('fs');
const { Parser, DiagnosticSeverity } = require('@asyncapi/parser');

async function main(file) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    console.error(`${file}: ${err.message}`);
    return 2;
  }
  const diagnostics = await new Parser().validate(text, { source: file });
  const serious = diagnostics.filter(
    (d) => d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning,
  );
  for (const d of diagnostics) {
    const severity = DiagnosticSeverity[d.severity] || d.severity;
    console.error(`${severity}: ${d.code} at /${d.path.join('/')}: ${d.message}`);
  }
  return serious.length ? 1 : 0;
}

if (process.argv.length !== 3) {
  console.error('usage: node validate.js FILE');
  process.exit(2);
}
main(process.argv[2]).then((code) => process.exit(code), (err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(2);
});
