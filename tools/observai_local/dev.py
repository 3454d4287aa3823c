"""`make dev` setup: a migrated database, a demo workspace, credentials in .observai/dev.json.

The database is DATABASE_URL, else the embedded Postgres whose data stays in .observai/pgdata between
runs (stopped when the last process using it exits). The first run creates a demo organization, project,
user and API key; later runs reuse them from .observai/dev.json while that organization exists, issuing a
fresh development JWT each time. OBSERVAI_STATE_DIR moves .observai elsewhere (a second checkout's runner,
the README test).
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from observai_local.functions import Environment, applied_environment
from observai_local.pg import database_url
from observai_local.template import ROOT

STATE_DIR = ROOT / ".observai"


def state_dir() -> Path:
    """Where the embedded database (pgdata/) and dev.json live: $OBSERVAI_STATE_DIR, else .observai."""
    configured = os.environ.get("OBSERVAI_STATE_DIR")
    return Path(configured).resolve() if configured else STATE_DIR


def dev_file() -> Path:
    return state_dir() / "dev.json"


def shown(path: Path) -> str:
    """A path as the banner shows it: relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


@dataclass
class DevInfo:
    base_url: str
    jwt: str
    api_key: str
    org_id: str
    project_id: str
    user_id: str
    email: str = ""


def prepare_database(root: Path = ROOT) -> tuple[str, list[str]]:
    """The database URL (starting the embedded server if needed) and the migration versions applied now."""
    from observai.db.migrations import apply_migrations

    url = database_url(state_dir() / "pgdata", cleanup_mode="stop")
    return url, apply_migrations(url, root / "migrations")


def _org_exists(url: str, org_id: str) -> bool:
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute("select 1 from public.organizations where id = %s", (org_id,)).fetchone() is not None
    except (psycopg.Error, ValueError):
        return False


def _load(path: Path) -> dict[str, str] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("org_id") else None


def ensure_workspace(url: str, env: Environment, base_url: str, path: Path | None = None) -> DevInfo:
    """Reuse the workspace of ``path`` (dev.json) if its org still exists, else create a demo one; write the file."""
    from observai.auth.jwt import issue_dev_token

    path = path or dev_file()
    saved = _load(path)
    with applied_environment(env):  # the settings the functions will see (stage, database, JWT secret)
        if saved and _org_exists(url, saved["org_id"]):
            info = DevInfo(
                base_url=base_url,
                jwt="",
                api_key=saved.get("api_key", ""),
                org_id=saved["org_id"],
                project_id=saved.get("project_id", ""),
                user_id=saved["user_id"],
                email=saved.get("email", ""),
            )
        else:
            from observai.tenancy.bootstrap import create_demo_workspace

            demo = create_demo_workspace()
            info = DevInfo(
                base_url=base_url,
                jwt="",
                api_key=demo.api_key,
                org_id=str(demo.org_id),
                project_id=str(demo.project_id),
                user_id=str(demo.user_id),
                email=demo.email,
            )
        info.jwt = issue_dev_token(info.user_id, info.email or None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(info), indent=2) + "\n")
    os.chmod(path, 0o600)
    return info


def ai_status(env: Mapping[str, str | None]) -> str:
    """The banner's AI line: on with a Gemini API key in the environment (GEMINI_API_KEY), else off; never the key."""
    key = env.get("GEMINI_API_KEY") or os.environ.get("GEMINI_API_KEY")
    if not key:
        return "off: no GEMINI_API_KEY (the AI routes answer 503 ai_not_configured; see docs/ai.md)"
    model = env.get("AI_GENERATION_MODEL") or os.environ.get("AI_GENERATION_MODEL") or "gemini-2.5-flash"
    where = env.get("GEMINI_BASE_URL") or os.environ.get("GEMINI_BASE_URL")
    return f"on: Gemini {model}{f' at {where}' if where else ''} (each organization opts in: PUT /v1/orgs/{{id}}/ai)"


def describe(
    info: DevInfo, *, routes: int, functions: int, schedules: int, database: str, ai: str | None = None
) -> str:
    """What `make dev` prints: where things are and ready-to-paste curl commands."""
    q = shlex.quote
    return "\n".join(
        [
            "",
            "ObservAI Hub local runner",
            f"  API         {info.base_url}  ({routes} routes, {functions} functions, {schedules} schedules)",
            f"  Database    {database}",
            *([f"  AI          {ai}"] if ai else []),
            f"  Org         {info.org_id}",
            f"  Project     {info.project_id}",
            f"  User        {info.user_id} {info.email}",
            f"  Saved in    {shown(dev_file())}",
            "",
            "Try:",
            f"  curl -s {q(info.base_url + '/v1/health')}",
            f"  curl -s -H {q('x-api-key: ' + info.api_key)} {q(info.base_url + '/v1/whoami')}",
            f"  curl -s -H {q('Authorization: Bearer ' + info.jwt)} {q(info.base_url + '/v1/orgs')}",
            "",
            "Ctrl-C stops"
            + (
                " (the embedded Postgres too, unless another process uses it)."
                if database.startswith("embedded")
                else "."
            ),
            "",
        ]
    )
