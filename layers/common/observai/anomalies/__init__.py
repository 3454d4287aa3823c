"""Anomaly detection: detectors over metric queries, explainable bands (zscore, robust, seasonal, level_shift, auto),
the incremental detect-anomalies job, anomaly events and their correlation, and the stateless backtest. See
docs/anomalies.md."""
