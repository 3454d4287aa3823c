"""Docker-free local runner: embedded Postgres, HttpApi routes served in-process, schedules, invoke."""
