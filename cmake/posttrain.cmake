# Helpers shared by every folder's CMakeLists.txt.

# posttrain_library(NAME SOURCES... [DEPS targets...] [TORCH])
#   A static library from one folder. TORCH links LibTorch and reuses the shared
#   precompiled header of the LibTorch headers (cmake/torch_pch.h), so each torch
#   translation unit does not parse ATen again.
function(posttrain_library name)
  cmake_parse_arguments(ARG "TORCH" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  target_compile_options(${name} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  if(ARG_TORCH)
    posttrain_use_torch(${name})
  endif()
endfunction()

# Link LibTorch and reuse the one precompiled header of its headers.
function(posttrain_use_torch target)
  target_link_libraries(${target} PUBLIC torch)
  if(NOT TARGET posttrain_torch_pch)
    message(FATAL_ERROR "posttrain_torch_pch must be defined before ${target}")
  endif()
  target_precompile_headers(${target} REUSE_FROM posttrain_torch_pch)
endfunction()
