-- One row per id, the newest by (timestamp, publish_time, message_id): the
-- rule mod_datos serves /datos by, for analysts who query the table.
SELECT id, contenido, `timestamp`
FROM (
  SELECT
    id,
    contenido,
    `timestamp`,
    ROW_NUMBER() OVER (
      PARTITION BY id
      ORDER BY `timestamp` DESC, publish_time DESC, message_id DESC
    ) AS newest
  FROM `${project}.${dataset}.${table}`
)
WHERE newest = 1
