# cmake -DFROM=PREFIX -DTO=DIR -P hetmem_publish_build.cmake — puts a finished jemalloc build
# (PREFIX's include/ and lib/) at DIR for other build directories (cmake/hetmem_jemalloc.cmake):
# copied beside DIR first, then renamed into place, and marked complete last, so that a reader
# never sees half of it. DIR already there (another build directory was first): nothing to do.
# A failure only means the next build directory builds jemalloc again; it is reported, never fatal.
if(EXISTS "${TO}/.complete")
  return()
endif()
string(RANDOM LENGTH 8 _tag)
set(_tmp "${TO}.tmp-${_tag}")
file(REMOVE_RECURSE "${_tmp}")
file(MAKE_DIRECTORY "${_tmp}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_directory "${FROM}/include" "${_tmp}/include" RESULT_VARIABLE _inc)
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_directory "${FROM}/lib" "${_tmp}/lib" RESULT_VARIABLE _lib)
if(NOT _inc STREQUAL "0" OR NOT _lib STREQUAL "0")
  message(STATUS "jemalloc's build was not kept in ${TO}: copying it failed")
  file(REMOVE_RECURSE "${_tmp}")
  return()
endif()
file(TOUCH "${_tmp}/.complete")
file(REMOVE_RECURSE "${TO}")
file(RENAME "${_tmp}" "${TO}" RESULT _renamed)
if(NOT _renamed STREQUAL "0")
  message(STATUS "jemalloc's build was not kept in ${TO}: ${_renamed}")
  file(REMOVE_RECURSE "${_tmp}")
endif()
