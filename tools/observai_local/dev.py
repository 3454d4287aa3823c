"""`make dev` setup: a migrated database, a demo workspace, credentials in .observai/dev.json.

The database is DATABASE_URL, else the embedded Postgres whose data stays in .observai/pgdata between
runs. The first run creates a demo organization, project, user and API key; later runs reuse them
from .observai/dev.json while that organization exists, issuing a fresh development JWT each time.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg

from observai_local.functions import Environment, applied_environment
from observai_local.pg import database_url
from observai_local.template import ROOT

STATE_DIR = ROOT / ".observai"
DEV_FILE = STATE_DIR / "dev.json"


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

    url = database_url(root / ".observai" / "pgdata", cleanup_mode=None)
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


def ensure_workspace(url: str, env: Environment, base_url: str, dev_file: Path = DEV_FILE) -> DevInfo:
    """Reuse the workspace of ``dev_file`` if its org still exists, else create a demo one; write the file."""
    from observai.auth.jwt import issue_dev_token

    saved = _load(dev_file)
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
    dev_file.parent.mkdir(parents=True, exist_ok=True)
    dev_file.write_text(json.dumps(asdict(info), indent=2) + "\n")
    os.chmod(dev_file, 0o600)
    return info


def describe(info: DevInfo, *, routes: int, functions: int, schedules: int, database: str) -> str:
    """What `make dev` prints: where things are and ready-to-paste curl commands."""
    q = shlex.quote
    return "\n".join(
        [
            "",
            "ObservAI Hub local runner",
            f"  API         {info.base_url}  ({routes} routes, {functions} functions, {schedules} schedules)",
            f"  Database    {database}",
            f"  Org         {info.org_id}",
            f"  Project     {info.project_id}",
            f"  User        {info.user_id} {info.email}",
            f"  Saved in    {DEV_FILE.relative_to(ROOT) if DEV_FILE.is_relative_to(ROOT) else DEV_FILE}",
            "",
            "Try:",
            f"  curl -s {q(info.base_url + '/v1/health')}",
            f"  curl -s -H {q('x-api-key: ' + info.api_key)} {q(info.base_url + '/v1/whoami')}",
            f"  curl -s -H {q('Authorization: Bearer ' + info.jwt)} {q(info.base_url + '/v1/orgs')}",
            "",
            "Ctrl-C stops.",
            "",
        ]
    )
