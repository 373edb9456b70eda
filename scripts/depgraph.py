#!/usr/bin/env python3
"""depgraph.py [BUILD_DIR] — which files of src/server call which: an edge
A -> B when A's object file uses a symbol B's defines (nm), so the graph is
what the linker sees, not what the includes suggest. Prints each file's
edges, then every cycle (strongly connected component of more than one file).
Exit status 1 if there is a cycle.
"""
import glob
import os
import subprocess
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build")
objs = sorted(glob.glob(os.path.join(build, "CMakeFiles", "*.dir", "src", "server",
                                     "**", "*.o"), recursive=True))
if not objs:
    sys.exit("no object files under %s: build first (make)" % build)

defined, used = {}, {}
for o in objs:
    src = o.split("/src/server/", 1)[1][:-2]  # ".../src/server/pg/client.c.o" -> "pg/client.c"
    if not os.path.exists(os.path.join(root, "src", "server", src)):
        continue  # left behind by a file that moved
    name = src[:-2]
    out = subprocess.run(["nm", "--defined-only", "-g", o], capture_output=True, text=True).stdout
    for ln in out.splitlines():
        parts = ln.split()
        if len(parts) == 3:
            defined[parts[2]] = name
    out = subprocess.run(["nm", "-u", o], capture_output=True, text=True).stdout
    used[name] = {ln.split()[-1] for ln in out.splitlines() if ln.strip()}

edges = {n: sorted({defined[s] for s in syms if s in defined and defined[s] != n})
         for n, syms in used.items()}
for n in sorted(edges):
    print("%-18s -> %s" % (n, " ".join(edges[n]) or "-"))

# Tarjan's strongly connected components
index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in edges.get(v, []):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            sccs.append(sorted(comp))


sys.setrecursionlimit(10000)
for v in sorted(edges):
    if v not in index:
        visit(v)
print()
if sccs:
    for c in sccs:
        print("cycle: " + " <-> ".join(c))
    sys.exit(1)
print("no cycles")
