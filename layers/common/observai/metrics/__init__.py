"""Metrics: rollups (1m/5m/1h/1d buckets with mergeable DDSketch percentiles) and the query API.

- ``sketch``: the DDSketch (1% relative accuracy) kept in every rollup bucket; pure Python, mergeable
  by adding counts in Python and in SQL.
- ``rollup``: the aggregate-metrics job: points → 1m buckets → 5m → 1h → 1d, incremental by ingest time.
"""
