-- Forecast rows of one environment and volume type between two dates (inclusive).
-- ${table} is substituted with a validated, backtick-quoted table name; values are parameters.
-- No ORDER BY: a sync writes the materialised rows in the order it reads them (sorting 5M rows
-- cost ~3x the query).
SELECT
  row_id,
  environment,
  volume_type,
  forecast_date,
  site_id,
  sku,
  forecast_units,
  lower_bound,
  upper_bound,
  model_version,
  generated_at
FROM ${table}
WHERE environment = @environment
  AND volume_type = @volume_type
  AND forecast_date BETWEEN @start_date AND @end_date
