"""Incidents: opened by notification groups; acknowledged, snoozed, assigned, commented, resolved; a timeline."""
