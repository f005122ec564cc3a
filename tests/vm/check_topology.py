#!/usr/bin/env python3
"""check_topology.py TOPOLOGY TOPO_JSON — what each VM topology *is*, checked against
`hetmem topo --json` run inside it: node kinds, the per-initiator tier order, and the kernel's
memory tiers (an independent witness: the kernel computes them from the same HMAT)."""
import json
import re
import sys

# kinds: node -> kind; order: initiator -> tier groups best first; tiers_order: nodes whose
# kernel memory tiers must be strictly increasing (fastest first), or None when the kernel
# puts everything in one tier.
EXPECT = {
    "ddr-hbm-slow": dict(kinds={0: "DDR", 1: "HBM", 2: "CXL"}, order={0: [[1], [0], [2]]},
                         tiers_order=[1, 0, 2], hmat=True),
    "two-socket-hbm": dict(kinds={0: "DDR", 1: "DDR", 2: "HBM", 3: "HBM"},
                           order={0: [[2], [0], [1], [3]], 1: [[3], [1], [0], [2]]},
                           tiers_order=[2, 0], hmat=True),
    "slit-only": dict(kinds={0: "DDR", 1: "DDR", 2: "unknown"},
                      order={0: [[0], [1], [2]], 1: [[1], [0], [2]]}, tiers_order=None, hmat=False),
    "memside-cache": dict(kinds={0: "DDR", 1: "PMEM"}, order={0: [[0], [1]]},
                          tiers_order=[0, 1], hmat=True, cache_node=1),
    "pmem-kmem": dict(kinds={0: "DDR", 1: "PMEM"}, order={0: [[0], [1]]}, tiers_order=[0, 1], hmat=False,
                      dax_node=1),
}


def main():
    topo, path = sys.argv[1], sys.argv[2]
    example = sys.argv[3] if len(sys.argv) > 3 else None
    exp = EXPECT[topo]
    with open(path) as f:
        t = json.load(f)
    errors = []
    nodes = {n["id"]: n for n in t["nodes"]}
    if sorted(nodes) != sorted(exp["kinds"]):
        errors.append(f"nodes {sorted(nodes)} != expected {sorted(exp['kinds'])}")
    for nid, kind in exp["kinds"].items():
        got = nodes.get(nid, {}).get("kind")
        if got != kind:
            errors.append(f"node {nid}: kind {got}, expected {kind}")
        if nodes.get(nid, {}).get("disagreements"):
            errors.append(f"node {nid}: unexpected disagreements {nodes[nid]['disagreements']}")
    inits = {i["node"]: i for i in t["initiators"]}
    for init, groups in exp["order"].items():
        got = [g["nodes"] for g in inits.get(init, {}).get("tiers", [])]
        if got != groups:
            errors.append(f"initiator {init}: order {got}, expected {groups}")
    if t["hmat"]["reported"] != exp["hmat"]:
        errors.append(f"hmat reported = {t['hmat']['reported']}, expected {exp['hmat']}")
    tiers = t["kernel"]["memory_tiers"]
    if tiers is None:
        errors.append("the 6.12 guest kernel must report memory tiers")
    else:
        tier_of = {n: tr["id"] for tr in tiers for n in tr["nodes"]}
        if exp["tiers_order"] is None:
            if len(tiers) != 1:
                errors.append(f"expected one kernel memory tier, got {tiers}")
        else:
            ids = [tier_of.get(n) for n in exp["tiers_order"]]
            if None in ids or ids != sorted(ids) or len(set(ids)) != len(ids):
                errors.append(f"kernel tiers of nodes {exp['tiers_order']} are {ids}: expected strictly increasing")
    if "cache_node" in exp:
        caches = nodes[exp["cache_node"]]["memory_side_caches"]
        if not caches or caches[0]["size_bytes"] != 256 << 20:
            errors.append(f"node {exp['cache_node']}: memory-side cache {caches}, expected 256 MiB")
    if "dax_node" in exp:
        n = nodes[exp["dax_node"]]
        if not n["dax_devices"] or n["confidence"] != "high" or n["reasons"][0]["source"] != "dax":
            errors.append(f"node {exp['dax_node']}: expected a kmem dax device deciding it, got {n['dax_devices']} "
                          f"{n['confidence']} {n['reasons'][:1]}")
    if example:
        # The std::vector example must land wholly on an HBM node where the machine has HBM.
        with open(example) as f:
            text = f.read()
        has_hbm = "HBM" in exp["kinds"].values()
        m = re.search(r"on HBM \(nodes (\d+)\): node (\d+): \d+ pages$", text, re.M)
        if has_hbm and not (m and m.group(1) == m.group(2) and exp["kinds"][int(m.group(1))] == "HBM"):
            errors.append(f"the std::vector example is not wholly on an HBM node: {text.strip()}")
        if not has_hbm and "no HBM memory on this machine" not in text:
            errors.append(f"the example should say there is no HBM: {text.strip()}")
    for e in errors:
        print(f"FAIL {topo}: {e}")
    print(f"check_topology {topo}: {'ok' if not errors else str(len(errors)) + ' problem(s)'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
