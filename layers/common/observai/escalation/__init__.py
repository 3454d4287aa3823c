"""Escalation policies and their run per incident: ordered steps paging users, on-call schedules and contact points,
halted by an acknowledgement, re-triggered by the ack timeout, stopped by the resolution. See docs/escalation.md."""
