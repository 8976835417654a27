// Drives Google's official Node.js BigQuery client, unchanged, against the datos GCP
// emulator (BIGQUERY_EMULATOR_HOST). Prints one JSON object with what the client returned;
// tests/emulator/test_emu_node_client.py checks it and what the client put on the wire.
'use strict';

const {BigQuery} = require('@google-cloud/bigquery');

async function main() {
  const projectId = process.env.DATOS_PROJECT || 'datos-local';
  const location = 'southamerica-east1';
  const bq = new BigQuery({projectId});
  const out = {};

  const datasetId = process.env.DATOS_DATASET || 'node_ds';
  const [dataset, dsMeta] = await bq.createDataset(datasetId, {location});
  out.dataset = {id: dataset.id, location: dsMeta.location, kind: dsMeta.kind};

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
  const [meta] = await table.getMetadata();
  out.table = {id: meta.id, timePartitioning: meta.timePartitioning,
               clustering: meta.clustering, location: meta.location};

  await table.insert([
    {id: '1', contenido: 'hola', timestamp: '2024-01-14T14:00:00.123456Z', message_id: 'm1'},
    {id: '1', contenido: 'hola nuevo', timestamp: '2024-01-14T15:00:00Z', message_id: 'm2'},
    {id: '2', contenido: null, timestamp: bq.timestamp('2024-01-14T13:00:00Z')},
    {id: '3', contenido: 'viejo', timestamp: '2024-01-10T00:00:00Z'},
  ]);

  const query = 'SELECT id, contenido, timestamp FROM `' + projectId + '.' + datasetId + '.datos`\n' +
    'WHERE timestamp >= @since\n' +
    'QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY timestamp DESC, publish_time DESC, ' +
    'message_id DESC) = 1\n' +
    'ORDER BY timestamp DESC, id ASC\nLIMIT @max_rows';
  const [rows] = await bq.query({
    query,
    params: {since: bq.timestamp('2024-01-14T00:00:00Z'), max_rows: 10},
    location,
  });
  out.rows = rows.map((r) => ({id: r.id, contenido: r.contenido,
                               timestamp: r.timestamp ? r.timestamp.value : null}));

  // A paged query: the client follows pageToken with jobs.getQueryResults.
  const [paged] = await bq.query({
    query: 'SELECT id FROM `' + projectId + '.' + datasetId + '.datos` ORDER BY id, timestamp',
    location, maxResults: 2,
  });
  out.paged = paged.map((r) => r.id);

  // COUNT(*) comes back as INTEGER; with query_incomplete_polls set on the emulator the
  // client polls jobs.getQueryResults until jobComplete.
  const [countRows] = await bq.query({
    query: 'SELECT COUNT(*) AS n FROM `' + projectId + '.' + datasetId + '.datos`', location,
  });
  out.count = countRows[0].n;

  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write('node client failed: ' + (err && err.stack || err) + '\n');
  if (err && err.errors) process.stderr.write(JSON.stringify(err.errors) + '\n');
  process.exit(1);
});
