"""Paging: contact points and their channels (e-mail, Slack, PagerDuty, webhook), people's notification settings,
the delivery records and their queue, and signed acknowledge/resolve links. See docs/notifications.md."""
