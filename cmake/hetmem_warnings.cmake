# hetmem_set_warnings(target): the project's warning set; errors when HETMEM_WERROR is on.
function(hetmem_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
    -Wcast-align -Wformat=2 $<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual>)
  if(HETMEM_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

if(HETMEM_SANITIZE)
  add_compile_options(-fsanitize=${HETMEM_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${HETMEM_SANITIZE})
endif()
