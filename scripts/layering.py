#!/usr/bin/env python3
"""The layering of src/ as docs/ARCHITECTURE.md documents it, checked.

docs/ARCHITECTURE.md holds two generated-looking blocks this script reads:
  - between "<!-- layers:begin -->" and "<!-- layers:end -->", a table of
    layers: "| N | path, path |" where a path is a folder of src/ (ending in
    "/") or one file; the deepest match places a file;
  - between "<!-- edges:begin -->" and "<!-- edges:end -->", one line per
    module: "module → module, module" (every include edge there is).

A source or header may include a header of its own folder, or of a module
placed in a lower layer; anything else is an upward (or sideways) include
and fails the check. The edge list must equal the include edges the code
has, so the picture a newcomer reads cannot drift from the code.

    python3 scripts/layering.py           # check; exit 1 with reasons
    python3 scripts/layering.py --edges   # print the edge block to paste
Standard library only.
"""

import os
import re
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(TOP, "docs", "ARCHITECTURE.md")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def sources():
    """Every .c/.h under src/ and include/, as paths relative to TOP."""
    out = []
    for root in ("src", "include"):
        for d, _, files in os.walk(os.path.join(TOP, root)):
            for f in files:
                if f.endswith((".c", ".h")):
                    out.append(os.path.relpath(os.path.join(d, f), TOP))
    return sorted(out)


def implementation(path, all_paths):
    """include/X.h stands for the src/ file that implements it (X.c)."""
    if not path.startswith("include/"):
        return path
    stem = os.path.basename(path)[:-2] + ".c"
    hits = [p for p in all_paths if p.startswith("src/") and os.path.basename(p) == stem]
    return hits[0] if len(hits) == 1 else None


def module(path):
    """The name a file has in the edge list."""
    rel = path[len("src/"):] if path.startswith("src/") else path
    parts = rel.split("/")
    stem = os.path.splitext(parts[-1])[0]
    if parts[0] in ("config", "dispatch"):
        return parts[0]
    if parts[:2] == ["store", "sqlite"]:
        return "store/sqlite"
    if parts[:2] == ["store", "postgres"]:
        return "store/postgres"
    if parts[0] == "store":
        return "store"
    return stem


def includes(path, all_paths):
    """The project files path includes (resolved as the compiler does)."""
    text = open(os.path.join(TOP, path), encoding="utf-8").read()
    out = []
    for name in INCLUDE.findall(text):
        here = os.path.normpath(os.path.join(os.path.dirname(path), name))
        if here in all_paths:
            out.append(here)
        elif os.path.join("include", name) in all_paths:
            out.append(os.path.join("include", name))
    return out


def block(text, name):
    m = re.search(r"<!-- %s:begin -->(.*?)<!-- %s:end -->" % (name, name), text, re.S)
    if not m:
        sys.exit("layering.py: %s has no %s block" % (DOC, name))
    return m.group(1)


def layers(text):
    """[(prefix, layer)], longest prefix first."""
    out = []
    for line in block(text, "layers").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            for p in cells[1].split(","):
                p = p.strip().strip("`")
                if p:
                    out.append((p, int(cells[0])))
    return sorted(out, key=lambda x: -len(x[0]))


def layer_of(path, table):
    for prefix, n in table:
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return n, prefix
    return None, None


def actual_edges(all_paths):
    edges = {}
    for p in all_paths:
        src = implementation(p, all_paths)
        if not src:
            continue
        for inc in includes(p, all_paths):
            dst = implementation(inc, all_paths)
            if dst and module(dst) != module(src):
                edges.setdefault(module(src), set()).add(module(dst))
    return edges


def format_edges(edges):
    return "\n".join("%s → %s" % (m, ", ".join(sorted(edges[m]))) for m in sorted(edges))


def main():
    all_paths = set(sources())
    edges = actual_edges(all_paths)
    if sys.argv[1:] == ["--edges"]:
        print(format_edges(edges))
        return 0
    text = open(DOC, encoding="utf-8").read()
    table = layers(text)
    problems = []
    for p in sorted(all_paths):
        src = implementation(p, all_paths)
        if not src:
            problems.append("%s: no src/ file implements it" % p)
            continue
        n, prefix = layer_of(src, table)
        if n is None:
            problems.append("%s: in no layer of the table" % src)
            continue
        for inc in includes(p, all_paths):
            dst = implementation(inc, all_paths)
            if not dst:
                continue
            m, dprefix = layer_of(dst, table)
            if m is None:
                continue
            same_folder = os.path.dirname(dst) == os.path.dirname(src) or (
                dprefix == prefix and prefix.endswith("/"))
            if not same_folder and m >= n:
                problems.append("%s (layer %d) includes %s (layer %d): an include must point down"
                                % (p, n, inc, m))
    documented = {}
    for line in block(text, "edges").splitlines():
        line = line.strip().strip("`")
        if "→" in line:
            a, b = line.split("→", 1)
            documented[a.strip()] = {x.strip() for x in b.split(",") if x.strip()}
    if documented != edges:
        for m in sorted(set(documented) | set(edges)):
            want, have = documented.get(m, set()), edges.get(m, set())
            if want != have:
                problems.append("edge list for %s: the doc says %s, the code has %s"
                                % (m, sorted(want), sorted(have)))
        problems.append("regenerate the block with: python3 scripts/layering.py --edges")
    for p in problems:
        print("layering: " + p)
    if problems:
        return 1
    print("layering: %d files, %d modules, every include points down" % (len(all_paths), len(edges)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
