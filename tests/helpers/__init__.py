"""Small helpers shared by the tests: users with tokens, an HTTP client, in-process handler calls."""
