# Warnings for the project's own targets (never applied to dependencies).
function(csr_target_flags target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
  if(CSR_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  # Sanitizers instrument the project's own code (dependencies are Debian's
  # uninstrumented builds). UB is fatal so a test cannot pass over it. gcc's
  # maybe-uninitialized warning misfires inside libstdc++ (<regex>,
  # std::function) once code is instrumented, so it is off in those builds.
  if((CSR_SANITIZE OR CSR_TSAN) AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
  endif()
  # Line tables only: reports keep file:line, the LibTorch-heavy files
  # compile much faster than with full debug information.
  if(CSR_SANITIZE OR CSR_TSAN OR CSR_FUZZ)
    target_compile_options(${target} PRIVATE -g1)
  endif()
  # -O1 in the AddressSanitizer and ThreadSanitizer builds (their documented
  # level): instrumented -O3 doubles the compile time of a LibTorch
  # translation unit (an ASan test file: 50.6 s at -O3, 25.6 s at -O1, user
  # time) for code whose heavy lifting runs in uninstrumented LibTorch anyway.
  # The fuzz build keeps -O3: its gate is a number of inputs per second.
  if(CSR_SANITIZE OR CSR_TSAN)
    target_compile_options(${target} PRIVATE -O1)
  endif()
  if(CSR_SANITIZE)
    # vptr checks misfire on polymorphic types whose type information lives
    # in uninstrumented shared libraries (LibTorch, OpenCV).
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize=vptr
                                             -fno-sanitize-recover=all -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize=vptr)
  endif()
  if(CSR_TSAN)
    target_compile_options(${target} PRIVATE -fsanitize=thread -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=thread)
  endif()
  if(CSR_FUZZ)
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=vptr
                                             -fno-sanitize-recover=all -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize=vptr)
  endif()
endfunction()

# The LibTorch translation units of `target` use csr_train's precompiled
# header (train/torch_pch.h), compiled once per build: the flags of every
# target here are csr_target_flags', so the one PCH fits them all. Where it
# did not (a compiler that refuses it), gcc warns (-Winvalid-pch, never an
# error) and parses the headers as usual: slower, same result.
function(csr_torch_pch target)
  if(CSR_PCH AND CSR_BUILD_TRAIN)
    target_precompile_headers(${target} REUSE_FROM csr_train)
    target_compile_options(${target} PRIVATE $<$<CXX_COMPILER_ID:GNU>:-Wno-error=invalid-pch>)
  endif()
endfunction()

# One executable per apps/<name>.cpp. Each app is a thin main() that calls a
# Run<Name>(argc, argv) living in the module library, so tests drive the tools.
function(csr_add_apps module_lib)
  file(GLOB app_sources CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/apps/*.cpp)
  foreach(src ${app_sources})
    get_filename_component(name ${src} NAME_WE)
    add_executable(${name} ${src})
    target_link_libraries(${name} PRIVATE ${module_lib})
    csr_target_flags(${name})
    if(module_lib STREQUAL "csr_train")
      csr_torch_pch(${name})
    endif()
    install(TARGETS ${name} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
    set_property(GLOBAL APPEND PROPERTY CSR_APPS ${name})  # the tests that run tools depend on them
  endforeach()
endfunction()
