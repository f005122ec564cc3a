#!/usr/bin/env python3
"""check-links.py — every relative link in README.md and docs/*.md names a file that exists,
and every #anchor into a Markdown file names one of its headings.

Usage: check-links.py REPO_DIR    (exit 1 with one line per broken link)
"""
import pathlib
import re
import sys

LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(md: pathlib.Path) -> set:
    out = set()
    in_code = False
    for line in md.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")  # GitHub's rule for these headings
        out.add(slug)
    return out


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    repo = pathlib.Path(argv[1])
    files = [repo / "README.md"] + sorted((repo / "docs").glob("*.md"))
    broken = []
    checked = 0
    for md in files:
        text = md.read_text(encoding="utf-8")
        text = re.sub(r"```.*?```", "", text, flags=re.S)  # links in code blocks are not links
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue  # http:, https:, mailto:
            path, _, anchor = target.partition("#")
            dest = (md.parent / path) if path else md
            checked += 1
            if not dest.exists():
                broken.append(f"{md.relative_to(repo)}: {target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{md.relative_to(repo)}: {target}: no heading makes #{anchor}")
    for b in broken:
        print("FAIL " + b)
    print(f"{'ok  ' if not broken else 'FAIL'} {checked} relative links in README.md and docs/, {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
