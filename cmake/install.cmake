# install.cmake — `cmake --install`: libspmla (+ SONAME links), public headers, the spmla CLI,
# backend plugins, a CMake package (find_package(spmla) -> spmla::spmla) and spmla.pc.
#
# Layout under the prefix (GNUInstallDirs):
#   ${CMAKE_INSTALL_LIBDIR}/libspmla.so.<ver>, .so.<abi>, .so     the library
#   ${CMAKE_INSTALL_LIBDIR}/libspmla_backend_<name>.so             plugins, next to libspmla: the
#                                                                  loader looks in libspmla's directory
#   ${CMAKE_INSTALL_INCLUDEDIR}/spmla.h, spmla_backend.h
#   ${CMAKE_INSTALL_BINDIR}/spmla                                  the CLI (RUNPATH $ORIGIN/../libdir)
#   ${CMAKE_INSTALL_LIBDIR}/cmake/spmla/                            CMake package
#   ${CMAKE_INSTALL_LIBDIR}/pkgconfig/spmla.pc                      pkg-config
# Everything is relocatable: `cmake --install build --prefix /anywhere` works.

set(SPMLA_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/spmla" CACHE STRING
    "Where the CMake package files of spmla are installed (relative to the prefix)")
# Plugins must sit next to libspmla: that is where the loader searches after SPMLA_BACKEND_PATH.
set(SPMLA_INSTALL_PLUGINDIR "${CMAKE_INSTALL_LIBDIR}")

install(TARGETS spmla EXPORT spmlaTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT runtime NAMELINK_COMPONENT development
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT development
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime
  PUBLIC_HEADER DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/spmla.hpp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT development)

if(TARGET spmla_cli)
  install(TARGETS spmla_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
endif()

# Backend plugins: every shared/module library target defined under backends/ whose name starts
# with spmla_backend_ (e.g. spmla_backend_cuda), installed next to libspmla. Plugin directories need
# no install rules of their own.
get_property(_spmla_subdirs DIRECTORY ${PROJECT_SOURCE_DIR} PROPERTY SUBDIRECTORIES)
foreach(_dir IN LISTS _spmla_subdirs)
  if(NOT _dir MATCHES "/backends/")
    continue()
  endif()
  get_property(_targets DIRECTORY ${_dir} PROPERTY BUILDSYSTEM_TARGETS)
  foreach(_t IN LISTS _targets)
    get_target_property(_type ${_t} TYPE)
    if(_t MATCHES "^spmla_backend_" AND _type MATCHES "^(SHARED|MODULE)_LIBRARY$")
      install(TARGETS ${_t}
        LIBRARY DESTINATION ${SPMLA_INSTALL_PLUGINDIR} COMPONENT runtime NAMELINK_SKIP)
      message(STATUS "spmla: installing backend plugin ${_t} into ${SPMLA_INSTALL_PLUGINDIR}")
    endif()
  endforeach()
endforeach()

# --- CMake package ---------------------------------------------------------------------------
install(EXPORT spmlaTargets
  NAMESPACE spmla::
  FILE spmlaTargets.cmake
  DESTINATION ${SPMLA_INSTALL_CMAKEDIR}
  COMPONENT development)
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/spmlaConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/spmlaConfig.cmake
  INSTALL_DESTINATION ${SPMLA_INSTALL_CMAKEDIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR CMAKE_INSTALL_LIBDIR)
# Same major = same ABI (the SONAME): a newer minor satisfies an older request.
write_basic_package_version_file(
  ${CMAKE_CURRENT_BINARY_DIR}/spmlaConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/spmlaConfig.cmake ${CMAKE_CURRENT_BINARY_DIR}/spmlaConfigVersion.cmake
  DESTINATION ${SPMLA_INSTALL_CMAKEDIR}
  COMPONENT development)

# --- pkg-config ------------------------------------------------------------------------------
# The prefix is derived from the .pc file's own location, so the file stays right after
# `cmake --install --prefix` elsewhere or a copy of the tree.
file(RELATIVE_PATH SPMLA_PC_PREFIX_FROM_PCDIR
     "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig" "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/$" "" SPMLA_PC_PREFIX_FROM_PCDIR "${SPMLA_PC_PREFIX_FROM_PCDIR}")
foreach(_kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_kind}}")
    set(SPMLA_PC_${_kind} "${CMAKE_INSTALL_${_kind}}")
  else()
    set(SPMLA_PC_${_kind} "\${prefix}/${CMAKE_INSTALL_${_kind}}")
  endif()
endforeach()
configure_file(${CMAKE_CURRENT_LIST_DIR}/spmla.pc.in ${CMAKE_CURRENT_BINARY_DIR}/spmla.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/spmla.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig
  COMPONENT development)

# --- license and changelog ------------------------------------------------------------------
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE ${PROJECT_SOURCE_DIR}/CHANGELOG.md
  DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT runtime)
