"""BigQuery dataset syncs: small ones inline in the HTTP request, large ones as `datasets` jobs
read in chunks (default 50K rows) into part files with a manifest, resumable after a crash.

request (validation) -> service (what the route calls) -> pipeline (the sync and the job
processor) -> source (BigQuery) / sink (object storage); sql holds the queries, seed loads
sample data into an emulator.
"""
