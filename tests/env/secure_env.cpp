// secure_env.cpp — what a program linked with hetmem reads from its environment, as it reads
// it: run as a setuid binary (AT_SECURE), every HETMEM_* variable must be ignored, so that a
// user cannot point a privileged program at a sysfs tree or a policy of their own.
// Prints "at_secure=0|1", "root=<the sysfs root>", "policy=set|unset", "topology=<nodes or error>".
#include <sys/auxv.h>

#include <cstdio>

#include "hetmem/policy.hpp"
#include "hetmem/sysfs/reader.hpp"
#include "hetmem/topology.hpp"

int main() {
  std::printf("at_secure=%lu\n", ::getauxval(AT_SECURE));
  std::printf("root=%s\n", hetmem::sysfs::default_root().c_str());
  std::printf("policy=%s\n", hetmem::policy::read_environment().policy ? "set" : "unset");
  auto t = hetmem::load_topology();
  if (t)
    std::printf("topology=%zu nodes\n", t->nodes.size());
  else
    std::printf("topology=error: %s\n", t.error().message.c_str());
  return 0;
}
