// Validates jambonz documents with jambonz's own verb schemas (@jambonz/verb-specifications).
// stdin: a JSON array of documents (each a verb array); stdout: a JSON array with, for
// each document, null when valid or the validator's error message.
'use strict';
const {validate} = require('@jambonz/verb-specifications');

// validate() logs malformed payloads through logger.info; keep stdout for the result.
const logger = {info() {}, debug() {}, error() {}};

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const documents = JSON.parse(input);
  const results = documents.map((document) => {
    try {
      validate(logger, document);
      return null;
    } catch (err) {
      return String(err && err.message ? err.message : err);
    }
  });
  process.stdout.write(JSON.stringify(results));
});
