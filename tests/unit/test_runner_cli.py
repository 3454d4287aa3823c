"""What a newcomer meets before any request: `make help`, `make build`'s inputs, the runner's messages and its
bookkeeping of the embedded Postgres."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
from pathlib import Path

from observai_local.__main__ import listen_error, main
from observai_local.pg import forget_exited_handles
from observai_local.template import load_template

ROOT = Path(__file__).resolve().parents[2]


def _phony_targets() -> list[str]:
    text = (ROOT / "Makefile").read_text()
    line = next(line for line in text.splitlines() if line.startswith(".PHONY:"))
    return line.split(":", 1)[1].split()


def test_make_help_lists_every_target_with_its_description() -> None:
    done = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
    listed = dict(
        (m.group(1), m.group(2))
        for m in re.finditer(r"^\s+(?:\x1b\[[0-9;]*m)?([a-z0-9-]+)\s*(?:\x1b\[[0-9;]*m)?\s+(.+)$", done.stdout, re.M)
    )
    for target in _phony_targets():
        assert listed.get(target, "").strip(), f"make help does not describe {target}"


def test_every_phony_target_exists() -> None:
    text = (ROOT / "Makefile").read_text()
    for target in _phony_targets():
        assert re.search(rf"^{re.escape(target)}:", text, re.M), target


def test_every_function_has_a_requirements_file_with_nothing_to_install() -> None:
    # sam build warns "requirements.txt file not found" for a function without one; the layer has the dependencies,
    # but for the Gemini SDK, shipped by the functions that call the model only (its import costs ~0.5 s), and numpy,
    # shipped by the aggregation only (its vectorised pass)
    calls_the_model = {"IncidentSummariesFunction", "AiWorkerFunction", "AskFunction", "SimilarIncidentsFunction"}
    own = {"AggregateMetricsFunction": ["numpy>=2.1,<3"]}
    for spec in load_template().functions.values():
        path = spec.code_uri / "requirements.txt"
        assert path.is_file(), f"{spec.logical_id}: {path} is missing (sam build would warn)"
        requirements = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        expected = ["google-genai>=1.50,<4"] if spec.logical_id in calls_the_model else own.get(spec.logical_id, [])
        assert requirements == expected, f"{spec.logical_id}: dependencies belong in layers/common/requirements.txt"


def test_a_busy_port_message_names_the_port_and_the_way_out() -> None:
    busy = listen_error("127.0.0.1", 3000, OSError(errno.EADDRINUSE, "Address already in use"))
    assert busy.startswith("error: port 3000 on 127.0.0.1 is already in use") and "PORT=3001 make dev" in busy
    denied = listen_error("0.0.0.0", 80, OSError(errno.EACCES, "Permission denied"))
    assert denied == "error: cannot listen on 0.0.0.0:80: Permission denied"
    assert "\n" not in busy + denied


def test_a_bad_port_is_a_usage_error(capsys, monkeypatch) -> None:
    monkeypatch.setenv("PORT", "http")
    try:
        main(["serve"])
    except SystemExit as exc:
        assert exc.code == 2
    else:
        raise AssertionError("serve accepted PORT=http")
    assert "not a port number: 'http'" in capsys.readouterr().err


def test_processes_that_died_without_saying_so_are_forgotten(tmp_path: Path) -> None:
    # Given pgserver's list of the processes using a data directory: this one, and one killed long ago
    handles = tmp_path / ".handle_pids.json"
    dead = 2**22 + 4321  # above Linux's largest pid
    handles.write_text(json.dumps([os.getpid(), dead]))
    # Then the dead one is dropped (else the last live user would never stop the server), the live one kept
    assert forget_exited_handles(tmp_path) == [os.getpid()]
    assert json.loads(handles.read_text()) == [os.getpid()]
    # And a missing or unreadable list is left alone
    handles.write_text("not json")
    assert forget_exited_handles(tmp_path) == []
    assert handles.read_text() == "not json"
    assert forget_exited_handles(tmp_path / "absent") == []


def test_a_client_that_hung_up_is_no_traceback(capsys) -> None:
    from observai_local.server import make_server

    server = make_server("127.0.0.1", 0, quiet=True)
    try:
        try:
            raise BrokenPipeError(32, "Broken pipe")
        except BrokenPipeError:
            server.handle_error(None, ("127.0.0.1", 1))
        assert capsys.readouterr().err == ""
        try:
            raise ValueError("a bug of ours")
        except ValueError:
            server.handle_error(None, ("127.0.0.1", 1))
        assert "ValueError: a bug of ours" in capsys.readouterr().err
    finally:
        server.server_close()


def test_a_server_bound_but_not_listening_refuses_until_activated() -> None:
    import socket

    from observai_local.server import make_server

    server = make_server("127.0.0.1", 0, quiet=True, listen=False)
    try:
        # Bound, not listening: a client is refused at once rather than left waiting
        with socket.socket() as probe:
            try:
                probe.connect(("127.0.0.1", server.port))
            except ConnectionRefusedError:
                pass
            else:
                raise AssertionError("connected before the server listens")
        server.server_activate()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass
    finally:
        server.server_close()
