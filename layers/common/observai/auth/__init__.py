"""Authentication: API keys for programs, Supabase JWTs for people, the Supabase Auth admin API."""
