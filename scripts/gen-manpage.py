#!/usr/bin/env python3
"""gen-manpage.py HETMEM OUT — writes the hetmem(1) man page from the CLI's own --help texts,
so the page cannot drift from the program: every subcommand, its options, examples and exit
status as `hetmem SUBCOMMAND --help` prints them."""
import re
import subprocess
import sys

hetmem, out_path = sys.argv[1], sys.argv[2]


def help_of(*args):
    r = subprocess.run([hetmem, *args, "--help"], capture_output=True, text=True, check=True,
                       env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"})
    return r.stdout


def esc(text):
    """roff-safe text: backslashes, leading dots and quotes, hyphens in options."""
    text = text.replace("\\", "\\e")
    text = re.sub(r"(?<![\w])-", r"\\-", text)
    if text.startswith(".") or text.startswith("'"):
        text = "\\&" + text
    return text


def sections(text):
    """Split a CLI11 help text into (title, lines) blocks: the description, 'Usage', 'Options:',
    'Positionals:', 'Subcommands:' and the footer."""
    blocks, title, cur = [], "description", []
    for line in text.splitlines():
        if re.match(r"^(Options|Positionals|Subcommands):$", line):
            blocks.append((title, cur))
            title, cur = line[:-1], []
        elif line.startswith("Usage:"):
            blocks.append((title, cur))
            blocks.append(("Usage", [line[len("Usage:"):].strip()]))
            title, cur = "after-usage", []
        elif title in ("Options", "Positionals", "Subcommands") and line and not line.startswith("  "):
            blocks.append((title, cur))
            title, cur = "footer", [line]
        else:
            cur.append(line)
    blocks.append((title, cur))
    return [(t, l) for t, l in blocks if any(x.strip() for x in l)]


def options(lines):
    """'  --json   Print JSON' -> [('--json', 'Print JSON')], continuation lines joined."""
    items = []
    for line in lines:
        m = re.match(r"^  (\S.*?)(?:\s{2,}(\S.*))?$", line)
        if m:
            items.append([m.group(1).strip(), (m.group(2) or "").strip()])
        elif items and line.strip():
            items[-1][1] += " " + line.strip()
    return items


def render_block(title, lines, page):
    if title in ("Options", "Positionals"):
        page.append(f".PP\n\\fB{title}:\\fR")
        for opt, desc in options(lines):
            if opt.startswith("-h,--help"):
                continue
            page.append(f".TP\n.B {esc(opt)}\n{esc(desc)}")
    elif title == "Usage":
        page.append(".PP\n.nf\n" + esc(lines[0].replace(hetmem, "hetmem")) + "\n.fi")
    elif title in ("footer", "after-usage", "description"):
        body = [line for line in lines if line.strip()]
        if body:
            page.append(".PP\n.nf\n" + "\n".join(esc(b) for b in body) + "\n.fi")


top = help_of()
subcommands = []
for title, lines in sections(top):
    if title == "Subcommands":
        subcommands = [(o, d) for o, d in options(lines)]
version = subprocess.run([hetmem, "--version"], capture_output=True, text=True).stdout.strip()

page = [
    '.TH HETMEM 1 "" "' + esc(version) + '" "User Commands"',
    ".SH NAME",
    "hetmem \\- see, place and move memory across DDR, HBM, PMEM, CXL and device tiers",
    ".SH SYNOPSIS",
    ".B hetmem",
    ".I SUBCOMMAND",
    "[\\fIOPTIONS\\fR]",
    ".SH DESCRIPTION",
    "hetmem reads the memory topology the firmware and kernel describe (HMAT, memory tiers, SLIT "
    "distances, dax and CXL links), classifies every NUMA node, runs programs under placement "
    "policies, moves and watches their pages, and keeps hot data in fast memory. This page is "
    "generated from the program's own \\fB\\-\\-help\\fR texts.",
    ".SH SUBCOMMANDS",
]
for name, desc in subcommands:
    page.append(f".TP\n.B {esc(name)}\n{esc(desc)}")
for name, _ in subcommands:
    page.append(f'.SH "HETMEM {name.upper()}"')
    for title, lines in sections(help_of(name)):
        render_block(title, lines, page)
page += [
    ".SH ENVIRONMENT",
    ".TP\n.B HETMEM_SYSFS_ROOT\nRead sysfs and procfs below this directory (a captured tree).",
    ".TP\n.B HETMEM_NODE_KINDS\nOverride node kinds, e.g. 2=hbm,4=pmem.",
    ".TP\n.B HETMEM_PROBE\nA saved \\fBhetmem probe \\-\\-save\\fR report, used as evidence ahead of HMAT "
    "(one that cannot be read is noted and ignored).",
    ".TP\n.B HETMEM_POLICY\\fR, \\fBHETMEM_CONFIG\nThe placement policy for the preload (text, or a file).",
    ".TP\n.B HETMEM_STRICT\\fR, \\fBHETMEM_EXPLAIN\\fR, \\fBHETMEM_REPORT\\fR, \\fBHETMEM_TIERING\\fR, \\fBHETMEM_DISABLE\n"
    "The preload's switches; see the README.",
    ".SH \"EXIT STATUS\"",
    "0 success; 1 the system or a file could not be read, or the system refused; 2 bad usage; "
    "3 \\fBtopo \\-\\-strict\\fR and a file could not be used; 4 \\fBmigrate\\fR moved some pages but "
    "not all, \\fBdoctor\\fR found a warning, or \\fBprobe\\fR measured a node that disagrees with HMAT. "
    "\\fBhetmem run\\fR exits with the program's status.",
    ".SH \"SEE ALSO\"",
    "\\fBnumactl\\fR(8), \\fBnumastat\\fR(8), \\fBlstopo\\fR(1), \\fBdaxctl\\fR(1), \\fBmove_pages\\fR(2), "
    "\\fBmbind\\fR(2), \\fBset_mempolicy\\fR(2)",
]
with open(out_path, "w") as f:
    f.write("\n".join(page) + "\n")
