"""Exports: a project's logs or spans copied, asynchronously, to object storage as gzip NDJSON."""
