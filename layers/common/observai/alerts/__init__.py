"""Alerting: rules and their kinds, evaluation into alert instances, routing into notification groups, silences,
inhibition and the notification log. Incidents live in observai.incidents."""
