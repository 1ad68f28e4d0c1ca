"""The documentation matches the command line: every `ifguide ...` line in README.md and docs/*.md (code blocks and
inline code) names an existing command and only options that command's --help lists, so a renamed or removed
option cannot stay documented; every command is shown somewhere, so a new one cannot stay undocumented; and every
link between the pages (and every #heading it names) resolves."""

from __future__ import annotations

import functools
import re
from pathlib import Path

from clikit import invoke_cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_LINE = re.compile(r"(?:(?<![\w/.-])ifguide|-m ifguide_cli)\s+(.*)")
OPTION = re.compile(r"(?:(?<=\s)|(?<=[\[(|]))(--?[A-Za-z][\w-]*)")
GLOBAL_WITH_VALUE = ("--workspace", "-w")
SHELL_BREAK = re.compile(r"\s(?:#|\||&&|;|>|2>)\s|`")
DEFAULT_SUBCOMMAND = {"mask": "select"}  # `ifguide mask SCORES` is `ifguide mask select SCORES`


def _panel(text: str, title: str) -> list[str]:
    """The rows of one panel (`Options`, `Commands`) of a rich --help page."""
    rows, inside = [], False
    for line in text.splitlines():
        if line.startswith(f"╭─ {title}"):
            inside = True
        elif line.startswith("╰"):
            inside = False
        elif inside:
            rows.append(line.strip("│ "))
    return rows


@functools.cache
def _page(*path: str) -> tuple[frozenset[str], frozenset[str]] | None:
    """(options, subcommands) of `ifguide PATH --help`, or None when PATH is not a command."""
    result = invoke_cli(ROOT, *path, "--help", env={"COLUMNS": "240"})
    if result.exit_code != 0 or f"Usage: ifguide {' '.join(path)}" not in result.stdout:
        return None
    options = set()
    for row in _panel(result.stdout, "Options"):
        for word in row.lstrip("* ").split():
            if not word.startswith("-"):
                break
            options.add(word)
    commands = {row.split()[0] for row in _panel(result.stdout, "Commands") if row and not row.startswith(" ")}
    return frozenset(options), frozenset(commands)


def _command_lines(text: str) -> list[str]:
    """Every `ifguide ...` invocation in the code of a Markdown file (continued lines joined)."""
    code, inside = [], False
    for line in text.replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside:
            code.append(line)
        else:
            code += re.findall(r"`([^`]+)`", line)
    return [m.group(1) for line in code for m in COMMAND_LINE.finditer(line)]


def _problems(invocation: str) -> list[str]:
    words = SHELL_BREAK.split(f" {invocation} ")[0].split()
    while words and words[0].startswith("-"):  # global options before the command
        words = words[2:] if words[0] in GLOBAL_WITH_VALUE else words[1:]
    if not words or not re.fullmatch(r"[a-z][a-z-]*", words[0]):
        return []  # a synopsis (`ifguide [--workspace DIR] COMMAND`), not a command line
    root = _page()
    assert root is not None
    global_options, commands = root
    if words[0] not in commands:
        return [f"no command `ifguide {words[0]}`"]
    path, rest = [words[0]], words[1:]
    page = _page(*path)
    assert page is not None
    if page[1]:  # a group: the next word is a subcommand, or the group's default one
        if rest and rest[0] in page[1]:
            path.append(rest.pop(0))
        elif path[0] in DEFAULT_SUBCOMMAND:
            path.append(DEFAULT_SUBCOMMAND[path[0]])
        elif rest and re.fullmatch(r"[a-z][a-z-]*", rest[0]):
            return [f"no command `ifguide {path[0]} {rest[0]}`"]
        page = _page(*path)
        assert page is not None, path
    known = page[0] | global_options
    given = OPTION.findall(" " + " ".join(rest))
    return [f"`ifguide {' '.join(path)}` has no option {opt}" for opt in given if opt.split("=")[0] not in known]


def test_every_documented_command_line_names_real_commands_and_options():
    problems = []
    for doc in DOCS:
        for invocation in _command_lines(doc.read_text()):
            problems += [f"{doc.relative_to(ROOT)}: {p}  (in `ifguide {invocation.strip()}`)" for p in _problems(invocation)]
    assert problems == []


def test_the_check_catches_a_wrong_option_and_a_wrong_command():
    lines = _command_lines("```bash\nifguide mask latest --treshold 0.9   # typo\nifguide masks show x\n```\n"
                           "and `ifguide eval toxicity m --samples 5` inline\n")
    assert [p for line in lines for p in _problems(line)] == ["`ifguide mask select` has no option --treshold",
                                                             "no command `ifguide masks`"]


def _command_paths() -> list[tuple[str, ...]]:
    """Every command and subcommand `ifguide --help` leads to."""
    root = _page()
    assert root is not None
    paths = []
    for name in sorted(root[1]):
        page = _page(name)
        assert page is not None, name
        paths += [(name, sub) for sub in sorted(page[1])] or [(name,)]
    return paths


def test_every_command_is_documented():
    text = " ".join(" ".join(doc.read_text().split()) for doc in DOCS)
    missing = [" ".join(path) for path in _command_paths() if f"ifguide {' '.join(path)}" not in text]
    assert missing == [], f"commands no page of README.md or docs/ shows as `ifguide ...`: {missing}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_pages_resolves():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # an external address
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            if not path.is_file():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and anchor not in {_slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)}:
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []
