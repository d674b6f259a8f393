#!/usr/bin/env python3
"""Checks that the modules of src/ import one way, from the CLI down to storage.

Each top-level module (a file or a folder of src/) has a floor; a module may import modules
on lower floors and, where the floor holds several, its neighbours, as long as no cycle
forms. Imports are read as `crate::<module>` paths in the source (outside `#[cfg(test)]`
modules at the end of a file). Exit 1 with the offending lines on an upward import, a
cycle, or a module missing from the floor plan (a new module must be given its place here).
"""
import os
import re
import sys

# Highest first: the order the data flows, as src/lib.rs describes it.
FLOORS = [
    ["cli"],
    ["server"],
    ["job", "notebook"],
    ["migrate"],
    ["query", "profile", "discover"],
    ["warehouse"],
    ["storage"],
    ["redact"],
]
floor = {m: i for i, ms in enumerate(FLOORS) for m in ms}

src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
mods = {}
for root, _, files in os.walk(src):
    for f in files:
        if f.endswith(".rs"):
            p = os.path.join(root, f)
            rel = os.path.relpath(p, src).split(os.sep)
            top = rel[0][:-3] if len(rel) == 1 else rel[0]
            if top not in ("main", "lib"):
                mods.setdefault(top, []).append(p)

problems = []
for m in sorted(mods):
    if m not in floor:
        problems.append(f"src/{m}: not in the floor plan of ci/module-layers.py")
edges = {}
for m, paths in mods.items():
    for p in paths:
        text = re.sub(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", "", open(p).read(), flags=re.S)
        for n, line in enumerate(text.splitlines(), 1):
            for x in re.findall(r"crate::([a-z_][a-z0-9_]*)", line):
                if x in mods and x != m:
                    edges.setdefault((m, x), (p, n, line.strip()))
for (a, b), (p, n, line) in sorted(edges.items()):
    if a in floor and b in floor and floor[b] < floor[a]:
        rel = os.path.relpath(p, os.path.join(src, ".."))
        problems.append(f"{rel}:{n}: {a} imports {b}, a floor above it: {line}")

# Cycles among neighbours on one floor.
graph = {}
for a, b in edges:
    graph.setdefault(a, set()).add(b)
state = {}


def visit(v, path):
    state[v] = 1
    for w in sorted(graph.get(v, ())):
        if state.get(w) == 1:
            problems.append("cycle: " + " -> ".join(path[path.index(w):] + [w]))
        elif w not in state:
            visit(w, path + [w])
    state[v] = 2


for v in sorted(mods):
    if v not in state:
        visit(v, [v])

for m in sorted(mods):
    deps = sorted({b for (a, b) in edges if a == m})
    print(f"{m:10} -> {', '.join(deps) or '-'}")
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print("module imports run one way (ci/module-layers.py): ok")
