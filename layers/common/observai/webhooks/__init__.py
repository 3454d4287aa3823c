"""Outbound webhooks (Standard Webhooks): endpoints, the outbox fan-out into messages, signed delivery with
retries, and the SSRF guard every delivery goes through."""
