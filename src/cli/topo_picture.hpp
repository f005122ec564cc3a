// topo_picture.hpp — `hetmem topo --format tree|dot|svg`: the same topology as a picture.
//
// All three show, for every initiator (a node with CPUs), its memory tiers best first and the
// nodes in each (kind, size, free, HMAT latency and bandwidth, SLIT distance, local or not).
// They are pure functions of the topology: the same tree gives the same bytes, so captured
// machines have golden pictures. Memory nodes no initiator ranks (a machine with no CPU node
// reported) are listed on their own.
#pragma once

#include <string>

#include "hetmem/topology.hpp"

namespace hetmem::cli {

struct tree_options {
  bool unicode = true;  // box-drawing characters; false: ASCII (|-- `--), for non-UTF-8 terminals
};

// A tree of initiators → tiers → nodes, for the terminal.
std::string render_tree(const topology &t, const tree_options &opt);
// Graphviz: initiators as boxes, memory nodes coloured by kind, an edge per (initiator, node)
// labelled with its rank (bold when local). `dot -Tsvg` draws it.
std::string render_dot(const topology &t);
// A self-contained SVG (no Graphviz needed): one column per initiator, its tiers top to
// bottom, each node a box coloured by kind; a legend.
std::string render_svg(const topology &t);

// Whether the terminal's character set is UTF-8 (LC_ALL, LC_CTYPE, LANG, as setlocale reads them).
bool terminal_is_utf8();

}  // namespace hetmem::cli
