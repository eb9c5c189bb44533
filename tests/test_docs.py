"""The documentation a user reads: a short README without dated measurements, links that resolve
(file and heading anchor), and config comments that document keys instead of keeping history."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").rglob("*.md"))
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))

README_MAX_LINES = 220
# a key's doc is one or two comment lines; a block may add a short example
COMMENT_BLOCK_MAX = 4
# the file's leading comment says what the config is and how to run it
HEADER_MAX = 10
DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# a path to a docs page with an optional anchor, as written in config comments
CONFIG_DOC_REF = re.compile(r"\b(docs/[\w./-]+\.md)(#[\w-]+)?")


def strip_code(text: str) -> str:
    """The markdown text without fenced code blocks and inline code spans."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file (repeated headings get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        slug = github_anchor(match.group(1))
        n = seen.get(slug, 0)
        out.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return out


def check_target(source: Path, target: str, base: Path) -> str | None:
    """None if `target` (path[#anchor], relative to `base`) exists, else what is wrong."""
    path_part, _, anchor = target.partition("#")
    dest = (base / path_part).resolve() if path_part else source
    if not dest.exists():
        return f"{source.relative_to(ROOT)}: link to missing file {target}"
    if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
        return f"{source.relative_to(ROOT)}: link {target}: no heading with anchor #{anchor} in {dest.name}"
    return None


def test_github_anchor_matches_github():
    assert github_anchor("Ablation ladder, demo size (Table 5)") == "ablation-ladder-demo-size-table-5"
    assert github_anchor("MemoryPro teacher: memory epochs 0.2-1.6 s") == "memorypro-teacher-memory-epochs-02-16-s"
    assert github_anchor("AdaBN (not the paper's method)") == "adabn-not-the-papers-method"
    assert github_anchor("Import name jedi_rnn for the jedi/ folder") == "import-name-jedi_rnn-for-the-jedi-folder"


def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES}); move detail to docs/"


def test_readme_and_configs_carry_no_dated_measurement():
    offenders = []
    for path in [README, *CONFIGS]:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if DATE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "dated measurements belong in docs/results or docs/decisions.md:\n" + "\n".join(offenders)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_resolve(path):
    assert DOCS, "docs/ has no markdown files"
    problems = []
    for target in LINK.findall(strip_code(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        problem = check_target(path, target, path.parent)
        if problem:
            problems.append(problem)
    assert not problems, "\n".join(problems)


def test_config_comments_link_to_existing_docs():
    problems = []
    for path in CONFIGS:
        for doc, anchor in CONFIG_DOC_REF.findall(path.read_text(encoding="utf-8")):
            problem = check_target(path, doc + anchor, ROOT)
            if problem:
                problems.append(problem)
    assert not problems, "\n".join(problems)


def comment_blocks(lines: list[str]) -> tuple[int, list[tuple[int, int]]]:
    """The header's length (comment lines before the first YAML line, `# @package` not counted) and
    (first line, length) of every later run of consecutive comment-only lines."""
    runs = []  # (first line, length, after the first YAML line)
    seen_yaml, start, run, after = False, 0, 0, False
    for i, line in enumerate([*lines, ""], 1):  # the empty sentinel closes the last run
        stripped = line.strip()
        if stripped.startswith("# @package"):
            continue
        if stripped.startswith("#"):
            if run == 0:
                start, after = i, seen_yaml
            run += 1
            continue
        if run:
            runs.append((start, run, after))
            run = 0
        seen_yaml = seen_yaml or bool(stripped)
    header = sum(n for _, n, after in runs if not after)
    return header, [(first, n) for first, n, after in runs if after]


def test_comment_blocks_counts_header_and_blocks():
    lines = ["# @package _global_", "# what", "# how", "a: 1", "# doc", "b: 2  # inline",
             "# one", "# two", "# three", "c: 3"]
    assert comment_blocks(lines) == (2, [(5, 1), (7, 3)])
    assert comment_blocks(["# only", "# comments"]) == (2, [])


def test_config_comments_document_keys_not_history():
    problems = []
    for path in CONFIGS:
        header, blocks = comment_blocks(path.read_text(encoding="utf-8").splitlines())
        rel = path.relative_to(ROOT)
        if header > HEADER_MAX:
            problems.append(f"{rel}: header comment of {header} lines (at most {HEADER_MAX})")
        problems += [f"{rel}:{start}: comment block of {n} lines (at most {COMMENT_BLOCK_MAX})"
                     for start, n in blocks if n > COMMENT_BLOCK_MAX]
    assert not problems, ("say what a key does in a line or two; decisions and measurements go to "
                          "docs/decisions.md and docs/results/:\n" + "\n".join(problems))
