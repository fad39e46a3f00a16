"""The generated reference (``docs/reference``) matches the code, and says what it should.

When ``test_the_committed_reference_is_current`` fails, the CLI, the HTTP API,
the settings or the flow API changed without the reference: run
``python -m hub.reference`` (``make docs``) and commit what it wrote.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub import reference
from tests.conftest import ROOT

DOCS = ROOT / "docs" / "reference"


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return reference.generate()


def section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level."""
    depth = len(heading.split(" ", 1)[0])
    lines = text[text.index(heading + "\n") + len(heading) + 1 :].splitlines(keepends=True)
    fenced = False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#") and len(line.split(" ", 1)[0]) <= depth:
            return "".join(lines[:i])
    return "".join(lines)


def test_the_committed_reference_is_current() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hub.reference", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (
        "docs/reference is stale; run `python -m hub.reference` and commit it\n" + done.stderr
    )


def test_every_generated_file_is_written_and_the_index_is_not(files: dict[str, str]) -> None:
    assert sorted(files) == ["cli.md", "flows.md", "http.md", "settings.md"]
    assert (DOCS / "README.md").is_file()
    assert "python -m hub.reference" in (DOCS / "README.md").read_text()


def test_the_cli_reference_has_each_command_with_its_help(files: dict[str, str]) -> None:
    cli = files["cli.md"]
    test = section(cli, "## `hub connections test`")
    assert "Reach the system and log in, changing nothing" in test
    assert "hub connections test [OPTIONS] NAME" in test
    assert "The connection's name." in test
    run = section(cli, "## `hub run`")
    assert "| `--input`, `-i` | str |" in run
    assert "| `--timeout` | float | `300.0` | Seconds to wait with --wait. |" in run
    assert "| `--wait` / `--no-wait` | flag | `False` |" in run
    skip = section(cli, "## `hub runs skip`")
    assert "| `--reason` | str | required | Why it is skipped. |" in skip
    assert "[`hub runs show`](#hub-runs-show)" in cli


def test_the_http_reference_has_routes_roles_and_answers(files: dict[str, str]) -> None:
    http = files["http.md"]
    intake = section(http, "### `POST /hooks/{name}`")
    assert "Receive a signed webhook delivery" in intake
    assert "no login" in intake
    assert "| 202 |" in intake
    run = section(http, "### `GET /api/runs/{run_id}`")
    assert "`viewer` role or above" in run
    assert "| `run_id` | path | string | yes |" in run
    start = section(http, "### `POST /api/flows/{flow}/runs`")
    assert "`operator` role or above" in start
    assert "| 201 |" in start
    act = section(http, "### `POST /api/runs/{run_id}/{action}`")
    assert "`cancel` (operator)" in act
    assert "`resume` (reviewer)" in act
    # pages are listed apart, not as JSON routes
    assert "### `GET /login`" not in http
    assert "| GET | `/reviews` |" in section(http, "## Pages")


def test_the_settings_reference_has_every_setting(files: dict[str, str]) -> None:
    from hub.settings import Settings

    settings = files["settings.md"]
    for name in Settings.model_fields:
        assert f"`HUB_{name.upper()}`" in settings
    row = next(line for line in settings.splitlines() if line.startswith("| `HUB_SECRET_KEY`"))
    assert "Fernet key(s) that encrypt stored connection secrets" in row
    assert "unset" in row
    # a default that would depend on the folder it runs in is shown as declared
    home = next(line for line in settings.splitlines() if line.startswith("| `HUB_HOME`"))
    assert "| `.hub` |" in home


def test_the_flow_reference_has_the_public_api(files: dict[str, str]) -> None:
    import hub

    flows = files["flows.md"]
    for name in hub.__all__:
        assert f"### `{name}`" in flows, name
    step = section(flows, "### `step`")
    assert "Declare a step. Use bare" in step
    assert "| `retries` |" in step
    connector = section(flows, "#### `StepContext.connector`")
    assert "connector(name: str) -> Any" in connector
    assert "The ready client of connection `name`" in connector
    assert '### `kind = "rest"`' in flows
    assert "#### `SalesforceClient.upsert`" in flows
    assert "#### `WebBot`" in flows
    assert "##### `Desktop.type_secret`" in flows


def test_the_output_is_stable_and_has_no_addresses_or_paths(files: dict[str, str]) -> None:
    assert reference.generate() == files
    for name, text in files.items():
        assert " at 0x" not in text, name
        assert str(ROOT) not in text, name
        assert "hub-reference-" not in text, name  # the throwaway database's folder
        assert text.endswith("\n") and not text.endswith("\n\n"), name


def test_check_names_an_edited_file_and_writing_fixes_it(
    tmp_path: Path, files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reference"
    assert reference.main(["--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    assert reference.main(["--check", "--out", str(out)]) == 0

    edited = out / "settings.md"
    edited.write_text(edited.read_text() + "\nedited by hand\n")
    (out / "cli.md").unlink()
    capsys.readouterr()
    assert reference.main(["--check", "--out", str(out)]) == 1
    said = capsys.readouterr().err
    assert "settings.md" in said
    assert "cli.md" in said
    assert "http.md" not in said

    assert reference.main(["--out", str(out)]) == 0
    assert reference.main(["--check", "--out", str(out)]) == 0


def test_check_of_a_copy_of_the_committed_docs_fails_once_one_is_edited(tmp_path: Path) -> None:
    copy = tmp_path / "reference"
    shutil.copytree(DOCS, copy)
    flows = copy / "flows.md"
    flows.write_text(flows.read_text().replace("Declare a step.", "Declare a step!", 1))
    done = subprocess.run(
        [sys.executable, "-m", "hub.reference", "--check", "--out", str(copy)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "flows.md" in done.stderr
    assert "cli.md" not in done.stderr


def test_docstrings_become_markdown() -> None:
    text = """Title with ``code`` and :class:`~hub.errors.BusinessError`.

    Example::

        x = 1

    After <NAME> and `HUB_<NAME>`.
    """
    assert reference.rst_to_markdown(text) == [
        "Title with `code` and `BusinessError`.",
        "",
        "Example:",
        "",
        "```",
        "x = 1",
        "```",
        "",
        "After &lt;NAME> and `HUB_<NAME>`.",
    ]
