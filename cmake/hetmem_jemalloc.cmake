# jemalloc 5.3.0 from Debian's source package (downloaded by scripts/setup.sh), built as a
# static PIC library with every symbol under a private prefix (hetmem_je_), so that linking
# hetmem never replaces the application's malloc (as memkind and UMF do). Never committed.
include(ExternalProject)
set(_hetmem_home "$ENV{HOME}")
if(NOT _hetmem_home)  # as scripts/setup.sh does: the password database
  execute_process(COMMAND sh -c "getent passwd \"$(id -u)\" | cut -d: -f6" OUTPUT_VARIABLE _hetmem_home
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
endif()
set(_hetmem_cache "${_hetmem_home}/.cache")
if(DEFINED ENV{XDG_CACHE_HOME} AND NOT "$ENV{XDG_CACHE_HOME}" STREQUAL "")
  set(_hetmem_cache "$ENV{XDG_CACHE_HOME}")
endif()
set(HETMEM_SRC_CACHE "${_hetmem_cache}/hetmem-src" CACHE PATH "Where scripts/setup.sh puts jemalloc's source")
if(DEFINED ENV{HETMEM_SRC_CACHE})
  set(HETMEM_SRC_CACHE "$ENV{HETMEM_SRC_CACHE}")
endif()
file(GLOB _hetmem_je_tarball "${HETMEM_SRC_CACHE}/jemalloc_5.3.0*.orig.tar.*")
if(NOT _hetmem_je_tarball)
  message(FATAL_ERROR "jemalloc's source is not in ${HETMEM_SRC_CACHE}: run scripts/setup.sh (it downloads it with apt-get source)")
endif()
list(GET _hetmem_je_tarball 0 _hetmem_je_tarball)
find_program(HETMEM_MAKE NAMES make gmake REQUIRED)
# Two builds, the same but for how jemalloc reaches its thread-locals:
# - hetmem_jemalloc: TLS descriptors (-mtls-dialect=gnu2, no initial-exec TLS), so libhetmem-c.so
#   and everything else linking the engine can still be dlopen()ed (jemalloc's thread state is
#   kilobytes, more than glibc keeps spare for libraries loaded late);
# - hetmem_jemalloc_ie: initial-exec TLS, for the preload only (always loaded at start-up): no
#   call on every malloc and free to reach the thread's cache (4% of a small-object workload).
# A target chooses the second with the property HETMEM_JEMALLOC_INITIAL_EXEC (see the engine).
# The preload's build also leaves out jemalloc's statistics (--disable-stats): the first mallctl
# (the preload's arenas.create, at start-up) zeroes a statistics table per arena, three before
# any arena of hetmem's, and each new page of them is a page fault: 0.4 ms of every program's
# start-up on this project's machines, most of what start-up cost beyond jemalloc's own. The
# preload reads no jemalloc statistics (tier_arena::counters() says when they are absent).
#
# On x86-64 both are configured for 48-bit addresses, as Debian's own libjemalloc is. configure
# would otherwise take 57 from CPUID on CPUs with 5-level paging, which makes jemalloc's radix
# tree deeper and its leaves twice as wide: free() then reads two words of the leaf where one
# does, and each leaf covers 128 MiB instead of 1 GiB. Linux gives user space addresses above
# 47 bits only to mmap() calls that ask for them with a hint above that line (the kernel's
# Documentation/arch/x86/x86_64/5level-paging.rst); jemalloc's memory comes from hetmem's
# window and from jemalloc's own mmap() calls, neither of which asks.
set(_hetmem_je_vaddr "")
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(_hetmem_je_vaddr "--with-lg-vaddr=48")
endif()
# Each build is kept in a cache shared by the build directories of this machine
# (HETMEM_JEMALLOC_CACHE, default ~/.cache/hetmem-build; empty: none), under a key made of
# everything that makes it: the source tarball's hash, configure's options, CFLAGS and the C
# compiler with its version. A build directory finding its key there links that build instead
# of configuring and compiling jemalloc again (scripts/check.sh's ci, asan and tsan builds
# share one: jemalloc's flags are its own, never the sanitizers'). A build is published whole
# or not at all (copied beside, then renamed into place).
file(SHA1 "${_hetmem_je_tarball}" _hetmem_je_tarball_sha1)
set(HETMEM_JEMALLOC_CACHE "${_hetmem_cache}/hetmem-build" CACHE PATH
    "Where built jemalloc libraries are kept for other build directories (empty: not kept)")
function(hetmem_add_jemalloc name dir tls_options cflags)
  set(_je_options --with-jemalloc-prefix=hetmem_je_ --with-private-namespace=hetmem_je_int_ --disable-cxx
                  ${tls_options} ${_hetmem_je_vaddr} --disable-doc --disable-libdl)
  string(SHA1 _key "${_hetmem_je_tarball_sha1}|${_je_options}|${cflags}|${CMAKE_C_COMPILER}|${CMAKE_C_COMPILER_ID}|${CMAKE_C_COMPILER_VERSION}")
  string(SUBSTRING "${_key}" 0 16 _key)
  set(_cached "")
  if(HETMEM_JEMALLOC_CACHE)
    set(_cached "${HETMEM_JEMALLOC_CACHE}/jemalloc-5.3.0-${_key}")
  endif()
  if(_cached AND EXISTS "${_cached}/.complete" AND EXISTS "${_cached}/lib/libjemalloc_pic.a")
    message(STATUS "jemalloc for ${name}: the build in ${_cached}")
    set(_je_prefix "${_cached}")
    set(_je_lib "${_cached}/lib/libjemalloc_pic.a")
    add_custom_target(${name}_build)
  else()
    set(_je_prefix "${CMAKE_BINARY_DIR}/${dir}")
    set(_je_lib "${_je_prefix}/lib/libjemalloc_pic.a")
    ExternalProject_Add(${name}_build
      URL "${_hetmem_je_tarball}"
      PREFIX "${_je_prefix}/work"
      INSTALL_DIR "${_je_prefix}"
      CONFIGURE_COMMAND <SOURCE_DIR>/configure --prefix=<INSTALL_DIR> ${_je_options}
                        CC=${CMAKE_C_COMPILER} "CFLAGS=${cflags}"
      BUILD_COMMAND ${HETMEM_MAKE} -j2 build_lib_static
      INSTALL_COMMAND ${HETMEM_MAKE} install_include install_lib_static
      BUILD_BYPRODUCTS "${_je_lib}"
      LOG_CONFIGURE ON LOG_BUILD ON LOG_INSTALL ON LOG_OUTPUT_ON_FAILURE ON)
    if(_cached)
      ExternalProject_Add_Step(${name}_build publish
        COMMAND ${CMAKE_COMMAND} -DFROM=${_je_prefix} -DTO=${_cached}
                -P ${PROJECT_SOURCE_DIR}/cmake/hetmem_publish_build.cmake
        DEPENDEES install)
    endif()
  endif()
  file(MAKE_DIRECTORY "${_je_prefix}/include")
  add_library(${name} STATIC IMPORTED GLOBAL)
  set_target_properties(${name} PROPERTIES IMPORTED_LOCATION "${_je_lib}"
    INTERFACE_INCLUDE_DIRECTORIES "${_je_prefix}/include" INTERFACE_LINK_LIBRARIES "pthread;dl;m")
  add_dependencies(${name} ${name}_build)
endfunction()
# Clang before 19 has no -mtls-dialect: there (the fuzzing build) jemalloc keeps the default
# general-dynamic TLS, which dlopen() also accepts, one call slower per access.
include(CheckCCompilerFlag)
check_c_compiler_flag(-mtls-dialect=gnu2 HETMEM_CC_HAS_TLS_DESCRIPTORS)
set(_hetmem_tls_flag "")
if(HETMEM_CC_HAS_TLS_DESCRIPTORS)
  set(_hetmem_tls_flag " -mtls-dialect=gnu2")
endif()
# Function sections as for hetmem's own code (see the top-level CMakeLists.txt).
hetmem_add_jemalloc(hetmem_jemalloc jemalloc "--disable-initial-exec-tls"
                    "-O2 -g -fPIC -ffunction-sections -fdata-sections${_hetmem_tls_flag}")
hetmem_add_jemalloc(hetmem_jemalloc_ie jemalloc-ie "--disable-stats" "-O2 -g -fPIC -ffunction-sections -fdata-sections")
