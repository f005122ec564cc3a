// gather_cmd.hpp — `hetmem gather NAME`: snapshot the sysfs/procfs files hetmem reads into
// OUT/NAME.tar.gz, which unpacks to NAME/{sys,proc}, for `hetmem topo --root NAME`.
#pragma once

#include <string>

namespace hetmem::cli {

struct gather_args {
  std::string name;
  std::string out = ".";
  std::string root;  // "" : $HETMEM_SYSFS_ROOT or /
};

// Contract: NAME is one path component of letters, digits, '.', '_' and '-' that starts with a
// letter or digit (at most 128 characters): the tarball and its top folder can land nowhere but
// OUT. Only regular files and symbolic links are copied (links as links, never followed; FIFOs,
// devices and write-only files are skipped). The tarball is written under a temporary name in
// OUT and renamed when complete: a failure (tar missing or failing, OUT full) leaves nothing
// behind. Exit: 0 written; 1 it could not be (the message names the step and the cause);
// 2 bad usage.
int run_gather(const gather_args &a);

}  // namespace hetmem::cli
