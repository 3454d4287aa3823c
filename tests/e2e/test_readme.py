"""The README's front page, followed literally: every `make` and `curl` example of its bash blocks, run as a
newcomer would, against a `make dev` this test starts (its own state directory, a free port), each checked
against what the page says it answers.

Conventions of the page this test holds it to:
- a block is either `make` commands or shell commands (never both);
- `make dev` is the runner the shell blocks talk to; `make test` is only dry-run (`make -n test`: it would run
  this very test); any other `make` command must succeed;
- the shell blocks run in order in one `bash -eu` (a variable used before it is set fails), with
  `localhost:3000` pointing at the test's port;
- every `curl` call has a comment `# <status>` (on its line, or the line after the command), in order; a
  `"key": value` written in that comment must be in the JSON answer too.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.runner_process import (
    ROOT,
    RunnerProcess,
    free_port,
    postgres_pid,
    runner_env,
    stop_leftover_postgres,
)

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"
BASH_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)
EXPECTED = re.compile(r"#\s*(\d{3})\b([^\n]*)")
CURL_CALL = re.compile(r"(?:^|\$\(|[;&|]\s*)\s*curl\s", re.M)
PAIR = re.compile(r'"([\w.]+)":\s*("[^"]*"|-?\d+(?:\.\d+)?|true|false|null)')
WRAPPER = """
curl() {  # the README's curl, its answer kept: status appended to $STATUSES, body to $BODIES/<n>
  local n; n=$(wc -l < "$STATUSES")
  command curl -o "$BODIES/$n" -w '%{http_code}\\n' "$@" >> "$STATUSES"
}
set -eu
"""


def _blocks() -> list[str]:
    return BASH_BLOCK.findall(README.read_text())


def _commands(block: str) -> list[str]:
    """The block's command lines, comments dropped."""
    lines = [line.split(" #", 1)[0].strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _is_make_block(block: str) -> bool:
    commands = _commands(block)
    makes = [c for c in commands if c.startswith("make ") or c == "make"]
    assert not makes or len(makes) == len(commands), f"a README block mixes make and shell commands:\n{block}"
    return bool(makes)


def _found(value: Any, key: str, expected: Any) -> bool:
    if isinstance(value, dict):
        return (key in value and value[key] == expected) or any(_found(v, key, expected) for v in value.values())
    if isinstance(value, list):
        return any(_found(v, key, expected) for v in value)
    return False


def test_the_page_has_examples_to_run() -> None:
    blocks = _blocks()
    makes = [c for b in blocks if _is_make_block(b) for c in _commands(b)]
    assert "make dev" in makes and "make test" in makes
    shell = "\n".join(b for b in blocks if not _is_make_block(b))
    assert len(CURL_CALL.findall(shell)) == len(EXPECTED.findall(shell)) >= 3, "a curl example without # <status>"
    assert "../" not in README.read_text(), "the README links outside the repository"


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="the README's examples need curl, jq")
def test_every_make_and_curl_example_of_the_front_page_answers_as_it_says(tmp_path: Path) -> None:
    blocks = _blocks()
    makes = [c for b in blocks if _is_make_block(b) for c in _commands(b)]
    shell = "\n".join(b for b in blocks if not _is_make_block(b))
    work = tmp_path / "work"  # the shell blocks' working directory: its .observai is the runner's state
    (tmp_path / "bodies").mkdir()
    work.mkdir()
    state = work / ".observai"
    port = free_port()

    runner = RunnerProcess(shlex.split("make dev"), state, port, tmp_path / "make-dev.log")
    try:
        runner.wait_ready(timeout=40)

        for command in makes:
            if command == "make dev":
                continue  # the runner above
            argv = shlex.split(command)
            if argv[:2] == ["make", "test"]:
                argv.insert(1, "-n")  # it would run this test again: check the target and its recipe only
            done = subprocess.run(
                argv, cwd=ROOT, env=runner_env(state, port), capture_output=True, text=True, timeout=30, check=False
            )
            assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
            if argv[:3] == ["make", "-n", "test"]:
                assert "pytest" in done.stdout, done.stdout

        statuses = tmp_path / "statuses"
        statuses.write_text("")
        script = WRAPPER + shell.replace("localhost:3000", f"localhost:{port}").replace(
            "127.0.0.1:3000", f"127.0.0.1:{port}"
        )
        env = {**runner_env(state, port), "STATUSES": str(statuses), "BODIES": str(tmp_path / "bodies")}
        done = subprocess.run(
            ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 0, f"the README's commands failed:\n{done.stderr}"

        got = [int(line) for line in statuses.read_text().split()]
        expected = EXPECTED.findall(shell)
        assert len(got) == len(expected), (got, expected)
        for n, ((status, said), answered) in enumerate(zip(expected, got, strict=True)):
            body = (tmp_path / "bodies" / str(n)).read_text()
            assert answered == int(status), f"curl #{n + 1}: {answered}, the README says {status}: {body[:500]}"
            pairs = PAIR.findall(said)
            if pairs:
                answer = json.loads(body)
                for key, value in pairs:
                    assert _found(answer, key, json.loads(value)), f"curl #{n + 1}: no {key}={value} in {body[:500]}"

        # Ctrl-C (SIGINT to the terminal's process group) stops the runner and its embedded Postgres
        assert postgres_pid(state / "pgdata") is not None
        runner.signal(signal.SIGINT, timeout=60)
        assert postgres_pid(state / "pgdata") is None, runner.output
        assert "Traceback" not in runner.output, runner.output
    finally:
        runner.close()
        stop_leftover_postgres(state / "pgdata")
