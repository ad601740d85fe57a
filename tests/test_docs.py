"""The documentation's examples run as written: every ```python and ```bash block of README.md and
docs/*.md, verbatim, in a folder holding ``artifacts/tiny`` (the export the README's first command
makes) and the shipped ``examples/`` (one image and its object mask).

Python blocks run with this test's Python, shell blocks with ``bash -e``, each on its own, in
page order, with this environment's ``i2f-deploy`` and ``python`` first on PATH. An HTML comment
before a block, with at most blank lines between (the pages do not show it), changes how it runs:

* ``<!-- snippet: skip: REASON -->``: not run (the real checkpoint, another machine, an
  annotation tool); a skip without a reason fails ``test_marks``, which lists every skip;
* ``<!-- snippet: server http://127.0.0.1:PORT -->``: started in the background; the page's next
  blocks run once ``URL/health`` answers, and the server is stopped (SIGTERM) after the page.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.golden import REPO

pytestmark = pytest.mark.system

PAGES = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
LANGUAGES = ("python", "bash")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\S*)\s*$")
MARK = re.compile(r"^\s*<!--\s*snippet:(?P<body>.*?)-->\s*$")
SKIP = re.compile(r"^skip:\s*(?P<reason>\S.*)$")
SERVER = re.compile(r"^server\s+(?P<url>http://127\.0\.0\.1:\d+)$")
BLOCK_TIMEOUT_S = 300
SERVER_START_S = 120
# variables that would change what the examples do (a token the curl examples do not send)
CLEARED = ("I2F_SERVE_TOKEN", "LABEL_STUDIO_URL", "LABEL_STUDIO_HOST", "LABEL_STUDIO_API_KEY",
           "LABEL_STUDIO_ACCESS_TOKEN", "BASIC_AUTH_USER", "BASIC_AUTH_PASS")


@dataclass(frozen=True)
class Block:
    """A fenced code block of a page, its first line (1-based) and the mark before it."""

    page: Path
    line: int
    lang: str
    code: str
    mark: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO) if self.page.is_relative_to(REPO) else self.page}:{self.line}"

    @property
    def skip_reason(self) -> str | None:
        found = SKIP.match(self.mark or "")
        return found["reason"] if found else None

    @property
    def server_url(self) -> str | None:
        found = SERVER.match(self.mark or "")
        return found["url"] if found else None


def read_blocks(page: Path) -> tuple[list[Block], list[str]]:
    """The page's fenced blocks (indentation of list items removed) and its malformed marks."""
    lines = page.read_text(encoding="utf-8").splitlines()
    name = page.relative_to(REPO) if page.is_relative_to(REPO) else page
    blocks: list[Block] = []
    problems: list[str] = []
    mark: tuple[int, str] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        marked = MARK.match(line)
        fence = FENCE.match(line)
        if mark is not None and not fence and line.strip():
            problems.append(f"{name}:{mark[0]}: a snippet mark must come right before a code block (blank lines aside)")
            mark = None
        if marked:
            body = marked["body"].strip()
            if not (SKIP.match(body) or SERVER.match(body)):
                problems.append(f"{name}:{index + 1}: {line.strip()!r} is neither "
                                "'snippet: skip: REASON' (a reason is required) nor 'snippet: server http://127.0.0.1:PORT'")
            mark = (index + 1, body)
        elif fence:
            indent, end = fence["indent"], index + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            code = "\n".join(text[len(indent):] if text.startswith(indent) else text.lstrip() for text in lines[index + 1:end])
            blocks.append(Block(page, index + 2, fence["lang"], code + "\n", mark[1] if mark else None))
            mark, index = None, end
        index += 1
    if mark is not None:
        problems.append(f"{name}:{mark[0]}: a snippet mark must come right before a code block (blank lines aside)")
    return blocks, problems


def runnable(page: Path) -> list[Block]:
    return [block for block in read_blocks(page)[0] if block.lang in LANGUAGES and block.skip_reason is None]


def test_marks():
    """Every mark is well formed and has a reason; the skipped blocks are listed (pytest -rP)."""
    problems = [problem for page in PAGES for problem in read_blocks(page)[1]]
    blocks = [block for page in PAGES for block in read_blocks(page)[0]]
    marked_elsewhere = [block.where for block in blocks if block.mark and block.lang not in LANGUAGES]
    assert not problems, "\n".join(problems)
    assert not marked_elsewhere, f"marks on blocks that never run: {marked_elsewhere}"
    skipped = [block for block in blocks if block.skip_reason]
    print(f"{len(skipped)} of {sum(block.lang in LANGUAGES for block in blocks)} blocks not run:")
    for block in skipped:
        print(f"  {block.where}: {block.skip_reason}")
    assert sum(map(len, map(runnable, PAGES))) > 0


def test_malformed_marks_are_refused(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- snippet: skip: -->\n```bash\ntrue\n```\n\n<!-- snippet: skip: a reason -->\ntext\n```bash\n```\n"
                    "<!-- snippet: server http://0.0.0.0:8000 -->\n```bash\ntrue\n```\n"
                    "  <!-- snippet: skip: indented, in a list -->\n\n  ```python\n  pass\n  ```\n")
    blocks, problems = read_blocks(page)
    assert [problem.split(": ", 1)[0] for problem in problems] == [f"{page}:1", f"{page}:6", f"{page}:10"], problems
    assert [(block.line, block.code, block.skip_reason) for block in blocks] == [
        (3, "true\n", None), (9, "\n", None), (12, "true\n", None), (17, "pass\n", "indented, in a list")]


def test_the_readme_first_bash_block_holds_the_two_commands():
    """.ci/run runs the two lines of the README's first bash block as a new user would."""
    first = next(block for block in read_blocks(REPO / "README.md")[0] if block.lang == "bash")
    lines = first.code.strip().splitlines()
    assert len(lines) == 2 and "i2f-deploy export" in lines[0] and "pytest" in lines[1], first.code


@pytest.fixture(scope="session")
def readme_tiny(tmp_path_factory) -> Path:
    """The export of the README's first command: the clone's ``artifacts/tiny`` where that command
    made it (CI, a working clone), else the same export made once here."""
    from i2f_deploy import runtime
    from i2f_deploy.errors import I2FError

    made = REPO / "artifacts" / "tiny"
    try:
        manifest = runtime.read_manifest(made)
        manifest.verify(made)
        if manifest.weights.source == "random" and manifest.target_size == 512:
            return made
    except (I2FError, OSError):
        pass
    from typer.testing import CliRunner

    from i2f_deploy.cli import app

    out = tmp_path_factory.mktemp("readme") / "tiny"
    result = CliRunner().invoke(app, ["export", "--config", "inter2former-tiny-512", "--random-weights", "--openvino",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def workdir(tmp_path, readme_tiny) -> Path:
    """The folder the examples run in, as the repository's root looks to a reader."""
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "tiny").symlink_to(readme_tiny, target_is_directory=True)
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    return tmp_path


def environment() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in CLEARED}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def command(block: Block) -> list[str]:
    return [sys.executable, "-c", block.code] if block.lang == "python" else ["bash", "-e", "-c", block.code]


def port_is_free(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as probe:
        return probe.connect_ex((parts.hostname, parts.port)) != 0


def start_server(block: Block, cwd: Path, log: Path) -> subprocess.Popen:
    url = block.server_url
    assert port_is_free(url), f"{block.where}: {url} is in use: the example listens there, stop what holds the port"
    with log.open("wb") as out:
        process = subprocess.Popen(command(block), cwd=cwd, env=environment(), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{block.where}: the server exited with status {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5):
                return process
        except OSError:
            time.sleep(0.3)
    stop(process)
    pytest.fail(f"{block.where}: {url}/health did not answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the block's process group (the shell and the server it started), then wait."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def run_block(block: Block, cwd: Path) -> None:
    try:
        done = subprocess.run(command(block), cwd=cwd, env=environment(), capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where}: still running after {BLOCK_TIMEOUT_S} s:\n{block.code}")
    assert done.returncode == 0, (f"{block.where} failed with status {done.returncode}:\n{block.code}\n"
                                  f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")


@pytest.mark.parametrize("page", [page for page in PAGES if runnable(page)], ids=lambda page: page.name)
def test_examples_run(page, workdir):
    servers: list[subprocess.Popen] = []
    try:
        for number, block in enumerate(runnable(page)):
            if block.server_url:
                servers.append(start_server(block, workdir, workdir / f"server-{number}.log"))
            else:
                run_block(block, workdir)
    finally:
        for process in servers:
            stop(process)
