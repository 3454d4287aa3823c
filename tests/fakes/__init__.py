"""Real HTTP servers on localhost standing in for external services (Supabase Auth, ...)."""
