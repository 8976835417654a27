// Drives Google's official Node.js BigQuery client, unchanged, through load jobs against the
// datos GCP emulator (BIGQUERY_EMULATOR_HOST): table.load() of a local NDJSON file (a
// multipart upload, then jobs.get polling), a load that fails on a bad row, a reused job id,
// and table.getRows() (tabledata.list). Prints one JSON object with what the client returned;
// tests/emulator/test_emu_node_client.py checks it and what the client put on the wire.
'use strict';

const {BigQuery} = require('@google-cloud/bigquery');

function failure(e) {
  return {message: e.message, code: e.code === undefined ? null : e.code,
          reasons: (e.errors || []).map(x => x.reason)};
}

async function main() {
  const projectId = process.env.DATOS_PROJECT || 'datos-local';
  const location = 'southamerica-east1';
  const bq = new BigQuery({projectId});
  const out = {};

  const [dataset] = await bq.createDataset(process.env.DATOS_DATASET, {location});
  const [table] = await dataset.createTable('datos', {
    schema: {fields: [
      {name: 'id', type: 'STRING', mode: 'REQUIRED'},
      {name: 'contenido', type: 'STRING', mode: 'NULLABLE'},
      {name: 'timestamp', type: 'TIMESTAMP', mode: 'REQUIRED'},
      {name: 'message_id', type: 'STRING', mode: 'NULLABLE'},
      {name: 'publish_time', type: 'TIMESTAMP', mode: 'NULLABLE'},
    ]},
    timePartitioning: {type: 'DAY', field: 'timestamp'},
    clustering: {fields: ['id']},
  });

  const options = {sourceFormat: 'NEWLINE_DELIMITED_JSON', writeDisposition: 'WRITE_APPEND',
                   createDisposition: 'CREATE_NEVER', jobId: 'node_load_g0'};
  const [meta] = await table.load(process.env.DATOS_GOOD_FILE, options);
  out.load = {state: meta.status.state, error: meta.status.errorResult || null,
              outputRows: meta.statistics.load.outputRows, jobId: meta.jobReference.jobId,
              location: meta.jobReference.location};

  try {
    await table.load(process.env.DATOS_BAD_FILE, Object.assign({}, options,
                                                                {jobId: 'node_load_bad'}));
    out.bad = null;
  } catch (e) {
    out.bad = failure(e);
  }

  try {
    await table.load(process.env.DATOS_GOOD_FILE, options);
    out.duplicate = null;
  } catch (e) {
    out.duplicate = failure(e);
  }

  // page by page, following pageToken
  out.rows = [];
  out.pages = 0;
  let query = {maxResults: 2, autoPaginate: false};
  while (query) {
    const [rows, next] = await table.getRows(query);
    out.pages += 1;
    for (const r of rows) {
      out.rows.push({id: r.id, contenido: r.contenido,
                     timestamp: r.timestamp ? r.timestamp.value : null});
    }
    query = next;
  }
  console.log(JSON.stringify(out));
}

main().catch(err => {
  console.error(err && err.stack ? err.stack : err);
  if (err && err.errors) console.error(JSON.stringify(err.errors));
  process.exit(1);
});
