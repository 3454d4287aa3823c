"""Cold-start import time of each function's handler, each import in a fresh Python process.

    python -m observai_local.coldstart [-n 5] [--function OrgsFunction] [--no-profile] [--json]

For every function of template.yaml a new interpreter (this venv's) imports the handler module as
Lambda does (the CodeUri on sys.path, ``import app``), with the function's template environment,
STAGE=local and no database or secret. Inside the child, time.perf_counter() brackets the import;
the parent also times the whole process (interpreter start to exit). Two floors are measured the same
way in the same run: a process that imports only ``json`` (the interpreter floor) and one that imports
only ``aws_lambda_powertools.Logger`` (the framework floor); the table gives each function's ratios
to them.

One more run per function uses ``-X importtime`` to name the packages that cost the most (self time
summed per top-level package), and records who first imported each heavy module (supabase, boto3,
botocore, jwt, cryptography, pydantic, psycopg, httpx, aws_xray_sdk): the design wants supabase and
boto3 imported only in the code paths that need them, not at cold start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from observai_local.functions import PASS_THROUGH
from observai_local.template import ROOT, FunctionSpec, Template, load_template

HEAVY_MODULES = (
    "supabase",
    "boto3",
    "botocore",
    "jwt",
    "cryptography",
    "pydantic",
    "psycopg",
    "httpx",
    "aws_xray_sdk",
    "google.genai",
    "numpy",
)
# Imported at cold start only by the code paths that need them (design: "Shape", where code lives); google-genai
# (~0.5 s) only by a model call (observai.ai.gemini), numpy (~0.1 s) only by the aggregation's first run, never at a
# handler's import.
MUST_BE_LAZY = ("supabase", "boto3", "google.genai", "numpy")
MARKER = "@@COLDSTART@@"

# The child: stdlib only until the import is timed; reports one JSON line after MARKER.
CHILD = r"""
import sys, time
keys = ("heavy", "watch", "root", "path", "module", "handler", "code", "marker")
config = dict(zip(keys, sys.argv[1:], strict=True))  # plain strings from the parent
heavy = config["heavy"].split(",")
config["watch"] = config["watch"] == "1"
importers = {}
if config["watch"]:
    import traceback
    class _Watch:
        def find_spec(self, name, path=None, target=None):
            if name in heavy and name not in importers:
                frames = [f for f in traceback.extract_stack()[:-1] if not f.filename.startswith("<")]
                def where(f):
                    name = f.filename.split("site-packages/")[-1].replace(config["root"] + "/", "")
                    return f"{name}:{f.lineno}"
                ours = [f for f in frames if f.filename.startswith(config["root"] + "/")
                        and "/site-packages/" not in f.filename]
                chain = []
                for f in ours:
                    if not chain or not chain[-1].startswith(where(f).rsplit(":", 1)[0] + ":"):
                        chain.append(where(f))
                if len(chain) > 4:
                    chain = [chain[0], "...", *chain[-3:]]
                importers[name] = {"by": where(frames[-1]) if frames else "?", "chain": chain}
            return None
    sys.meta_path.insert(0, _Watch())
if config["path"]:
    sys.path.insert(0, config["path"])
before = len(sys.modules)
started = time.perf_counter()
cpu_started = time.process_time()
if config["module"]:
    import importlib
    module = importlib.import_module(config["module"])
    ok = callable(getattr(module, config["handler"], None))
else:
    exec(config["code"])
    ok = True
elapsed = time.perf_counter() - started
cpu = time.process_time() - cpu_started
loaded = {name: name in sys.modules for name in heavy}
import json
print(config["marker"] + json.dumps({"ms": elapsed * 1000, "cpu_ms": cpu * 1000, "handler_ok": ok, "loaded": loaded,
                                      "new_modules": len(sys.modules) - before, "importers": importers}))
"""


@dataclass
class Target:
    name: str
    env: dict[str, str]
    module: str | None = None
    handler: str | None = None
    path: str | None = None
    code: str | None = None


@dataclass
class Result:
    name: str
    import_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)
    loaded: dict[str, bool] = field(default_factory=dict)
    new_modules: int = 0
    handler_ok: bool = True
    importers: dict[str, Any] = field(default_factory=dict)
    top_packages: list[tuple[str, float]] = field(default_factory=list)

    @property
    def import_median(self) -> float:
        return statistics.median(self.import_ms)

    @property
    def wall_median(self) -> float:
        return statistics.median(self.wall_ms)


def base_environment() -> dict[str, str]:
    """This process's environment without anything that would give a child a database or a secret."""
    env = dict(os.environ)
    for name in ("DATABASE_URL", "DATABASE_URL_FOR_TESTS", "APP_SECRET_ARN", "PYTHONPROFILEIMPORTTIME", *PASS_THROUGH):
        env.pop(name, None)
    env.setdefault("XDG_RUNTIME_DIR", "/tmp")  # noqa: S108 - what pgserver expects too
    return env


def function_environment(spec: FunctionSpec) -> dict[str, str]:
    """As the Lambda runtime would set it: runtime variables, then the template's (POWERTOOLS_* included)."""
    env = base_environment()
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_size),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_REGION": env.get("AWS_REGION", "us-east-1"),
            "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION", "us-east-1"),
        }
    )
    env.update(spec.environment)
    env["STAGE"] = "local"
    for name in ("APP_SECRET_ARN", "DATABASE_URL"):  # no secret fetch, no database
        env.pop(name, None)
    return env


def targets(template: Template, only: list[str] | None = None) -> list[Target]:
    found = []
    for logical_id, spec in sorted(template.functions.items()):
        if only and logical_id not in only:
            continue
        module, _, handler = spec.handler.rpartition(".")
        found.append(
            Target(logical_id, function_environment(spec), module=module, handler=handler, path=str(spec.code_uri))
        )
    return found


def floors() -> list[Target]:
    env = base_environment()
    env.update({"STAGE": "local", "POWERTOOLS_SERVICE_NAME": "observai"})
    return [
        Target("floor: import json", env, code="import json"),
        Target("floor: powertools Logger", env, code="from aws_lambda_powertools import Logger"),
    ]


def _run_child(target: Target, *, watch: bool = False, importtime: bool = False) -> tuple[dict[str, Any], float, str]:
    config = [
        ",".join(HEAVY_MODULES),
        "1" if watch else "0",
        str(ROOT),
        target.path or "",
        target.module or "",
        target.handler or "",
        target.code or "",
        MARKER,
    ]
    argv = [sys.executable, *(["-X", "importtime"] if importtime else []), "-c", CHILD, *config]
    started = time.perf_counter()
    proc = subprocess.run(  # noqa: S603 - our own interpreter and script
        argv, env=target.env, cwd=target.path or str(ROOT), capture_output=True, text=True, timeout=120, check=False
    )
    wall = (time.perf_counter() - started) * 1000
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)), None)
    if proc.returncode != 0 or line is None:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{target.name}: the child failed (exit {proc.returncode}):\n{tail}")
    return json.loads(line[len(MARKER) :]), wall, proc.stderr


def top_packages(importtime_stderr: str, count: int = 5) -> list[tuple[str, float]]:
    """Self import time summed per top-level package, heaviest first, in ms."""
    totals: dict[str, float] = {}
    for line in importtime_stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        try:
            self_us, _cumulative, name = (part.strip() for part in line[len("import time:") :].split("|", 2))
            package = name.split(".", 1)[0]
            totals[package] = totals.get(package, 0.0) + int(self_us) / 1000
        except ValueError:
            continue
    return sorted(totals.items(), key=lambda item: -item[1])[:count]


def measure(target: Target, repeat: int, *, profile: bool) -> Result:
    result = Result(target.name)
    for _ in range(repeat):
        report, wall, _ = _run_child(target)
        result.import_ms.append(report["ms"])
        result.cpu_ms.append(report["cpu_ms"])
        result.wall_ms.append(wall)
        result.loaded = report["loaded"]
        result.new_modules = report["new_modules"]
        result.handler_ok = result.handler_ok and report["handler_ok"]
    if profile:
        report, _, stderr = _run_child(target, watch=True, importtime=True)
        result.importers = report["importers"]
        result.top_packages = top_packages(stderr)
    return result


def layer_bytecode() -> tuple[int, int]:
    """(modules of the layer's package with current bytecode, modules): the deployed layer ships its bytecode
    (layers/common/Makefile); a tree without it measures a compile of every module at each import as well."""
    import importlib.util

    sources = sorted((ROOT / "layers" / "common" / "observai").rglob("*.py"))
    current = 0
    for source in sources:
        cached = Path(importlib.util.cache_from_source(str(source)))
        if cached.exists() and cached.stat().st_mtime >= source.stat().st_mtime:
            current += 1
    return current, len(sources)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def report(results: list[Result], floor_json: Result, floor_logger: Result, repeat: int) -> str:
    out = [
        f"Cold start: handler import in a fresh process, {repeat} runs each ({sys.executable}, Python "
        f"{sys.version.split()[0]})",
        "import = perf_counter around the import inside the child; process = spawn to exit, seen by the parent",
        "cpu = the child's CPU time (process_time) over the import: on a shared machine, steadier than the wall clock",
        "",
    ]
    header = [
        "target",
        "import med ms",
        "import min ms",
        "cpu med ms",
        "cpu min ms",
        "process med ms",
        "modules",
        "import/Logger",
        "process/json",
    ]
    rows = []
    for r in [floor_json, floor_logger, *results]:
        rows.append(
            [
                r.name,
                f"{r.import_median:.1f}",
                f"{min(r.import_ms):.1f}",
                f"{statistics.median(r.cpu_ms):.1f}",
                f"{min(r.cpu_ms):.1f}",
                f"{r.wall_median:.1f}",
                str(r.new_modules),
                f"{r.import_median / floor_logger.import_median:.1f}x",
                f"{r.wall_median / floor_json.wall_median:.1f}x",
            ]
        )
    out.append(_table(rows, header))
    compiled, modules = layer_bytecode()
    out += [
        "",
        f"layer bytecode: {compiled} of the {modules} modules of layers/common/observai have current .pyc files (the "
        "deployed layer ships them; `make coldstart` compiles them first)",
        f"floors: import json {floor_json.import_median:.2f} ms in a {floor_json.wall_median:.0f} ms process; "
        f"powertools Logger {floor_logger.import_median:.1f} ms",
        "",
        "Heavy modules loaded at handler import (y = in sys.modules after the import):",
    ]
    header = ["function", *HEAVY_MODULES]
    out.append(_table([[r.name, *("y" if r.loaded.get(m) else "-" for m in HEAVY_MODULES)] for r in results], header))
    problems = [(r.name, m) for r in results for m in MUST_BE_LAZY if r.loaded.get(m)]
    out.append("")
    if problems:
        out.append("NOT LAZY (the design wants these imported only where needed): ")
        out += [f"  {name}: {module}" for name, module in problems]
    else:
        out.append(f"OK: {', '.join(MUST_BE_LAZY)} are not imported at cold start by any function")
    for r in results:
        if not r.handler_ok:
            out.append(f"WARNING {r.name}: the handler is not callable after import")
        if r.top_packages:
            out.append("")
            heaviest = ", ".join(f"{name} {ms:.0f}" for name, ms in r.top_packages)
            out.append(f"{r.name}: heaviest packages (self ms, -X importtime): {heaviest}")
            for module, who in sorted(r.importers.items()):
                chain = [step for step in who.get("chain") or [] if step != who["by"]]
                origin = f"  <- {' <- '.join(reversed(chain))}" if chain else ""
                out.append(f"    {module:<13} first imported by {who['by']}{origin}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observai_local coldstart", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--repeat", type=int, default=5, help="fresh processes per target (default 5)")
    parser.add_argument("--function", action="append", help="only this logical id (repeatable)")
    parser.add_argument("--no-profile", action="store_true", help="skip the -X importtime run")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON instead of tables")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    template = load_template()
    selected = targets(template, args.function)
    if not selected:
        print(f"error: no such function: {args.function}", file=sys.stderr)
        return 2
    try:
        floor_json, floor_logger = (measure(t, args.repeat, profile=False) for t in floors())
        results = [measure(t, args.repeat, profile=not args.no_profile) for t in selected]
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        payload = {r.name: r.__dict__ for r in [floor_json, floor_logger, *results]}
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(report(results, floor_json, floor_logger, args.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
