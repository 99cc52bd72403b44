# Every external dependency is found here, and only here. Each is a Debian 12
# package; a missing one stops configuration with the package to install.

function(csr_require found_var package)
  if(NOT ${found_var})
    message(FATAL_ERROR "csrnet-cpp: missing dependency. Install it with: apt-get install ${package}")
  endif()
endfunction()

find_package(Threads REQUIRED)

find_package(OpenCV QUIET COMPONENTS core imgproc imgcodecs videoio dnn)
csr_require(OpenCV_FOUND libopencv-dev)

find_package(Eigen3 3.3 QUIET NO_MODULE)
csr_require(Eigen3_FOUND libeigen3-dev)

find_package(nanoflann QUIET)
csr_require(nanoflann_FOUND libnanoflann-dev)

find_package(HDF5 QUIET COMPONENTS C)
csr_require(HDF5_FOUND libhdf5-dev)

# zlib: shard checksums (crc32) and the shards' optional deflate compression.
find_package(ZLIB QUIET)
csr_require(ZLIB_FOUND zlib1g-dev)

find_package(TBB QUIET)
csr_require(TBB_FOUND libtbb-dev)

find_package(nlohmann_json 3 QUIET)
csr_require(nlohmann_json_FOUND nlohmann-json3-dev)

find_package(PkgConfig QUIET)
csr_require(PKG_CONFIG_FOUND pkg-config)
pkg_check_modules(MATIO QUIET IMPORTED_TARGET matio)
csr_require(MATIO_FOUND libmatio-dev)

if(CSR_BUILD_TESTS)
  find_package(doctest QUIET)
  csr_require(doctest_FOUND doctest-dev)
endif()

if(CSR_BUILD_TRAIN)
  find_package(Torch QUIET)
  csr_require(Torch_FOUND libtorch-dev)
  # c10d's ProcessGroupGloo.hpp includes Gloo's headers: Debian ships them in
  # libgloo-dev; a PyPI LibTorch carries them in its own include folder.
  find_path(CSR_GLOO_INCLUDE gloo/context.h HINTS ${TORCH_INCLUDE_DIRS})
  csr_require(CSR_GLOO_INCLUDE libgloo-dev)
  # Debian's LibTorch calls the system BLAS (libblas.so.3) for some
  # convolutions; with the reference implementation there, training on small
  # patches runs about 9x slower than with OpenBLAS (scripts/deps.sh). It still
  # works: a warning, not an error.
  if(NOT Torch_DIR MATCHES "site-packages" AND CMAKE_LIBRARY_ARCHITECTURE)
    get_filename_component(csr_blas "/usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/libblas.so.3" REALPATH)
    if(csr_blas MATCHES "/blas/libblas\\.so" OR NOT EXISTS "${csr_blas}")
      message(WARNING "csrnet-cpp: libblas.so.3 is the reference BLAS (${csr_blas}): LibTorch's BLAS calls run "
                      "about 9x slower on small patches. Install an optimised one: apt-get install libopenblas0-openmp")
    endif()
  endif()
  # A PyPI torch wheel's CUDA libraries need the NCCL, cuDNN, ... of the
  # wheel's nvidia/* packages (their RPATH points there), not the older ones a
  # local CUDA toolkit may put first on the linker's path: name them to the
  # linker for resolving those libraries' own dependencies.
  file(GLOB csr_wheel_nvidia_libs LIST_DIRECTORIES true "${TORCH_INSTALL_PREFIX}/../nvidia/*/lib")
  foreach(dir ${csr_wheel_nvidia_libs})
    add_link_options("LINKER:-rpath-link,${dir}")
  endforeach()
  if(csr_wheel_nvidia_libs)
    message(STATUS "csrnet-cpp: LibTorch ${Torch_VERSION} from a PyPI wheel (${TORCH_INSTALL_PREFIX})")
  endif()
endif()

# HDF5's CMake module exposes variables, not a target: wrap them once.
add_library(csr_hdf5 INTERFACE)
target_include_directories(csr_hdf5 SYSTEM INTERFACE ${HDF5_INCLUDE_DIRS})
target_link_libraries(csr_hdf5 INTERFACE ${HDF5_LIBRARIES})
target_compile_definitions(csr_hdf5 INTERFACE ${HDF5_DEFINITIONS})
