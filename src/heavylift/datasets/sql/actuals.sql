-- Actual volumes of one environment and volume type between two dates (inclusive).
-- ${table} is substituted with a validated, backtick-quoted table name; values are parameters.
-- No ORDER BY: a sync writes the materialised rows in the order it reads them (sorting 5M rows
-- cost ~3x the query).
SELECT
  row_id,
  environment,
  volume_type,
  activity_date,
  site_id,
  sku,
  actual_units,
  recorded_at
FROM ${table}
WHERE environment = @environment
  AND volume_type = @volume_type
  AND activity_date BETWEEN @start_date AND @end_date
