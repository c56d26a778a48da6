# Install rules: the public headers, libupager with the static libraries it
# needs, the `upager` tool, a CMake package (find_package(upager) gives
# upager::upager) and upager.pc for pkg-config.
#
#   cmake --install build --prefix /opt/upager
#
# libupager is a static library, and so are the layers it links PRIVATE
# (upager_os, upager_pager, upager_backing). A static library's private
# dependencies are still needed when the application links, so all of them
# are installed and exported; upager::upager names them in its link
# interface and an application links only upager::upager.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(UPAGER_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/upager)
set(UPAGER_INSTALL_LIBRARIES upager upager_api upager_os upager_pager
                             upager_backing)

# The public headers use std::optional and friends: an application needs
# C++17 at least (the project itself builds as C++20).
target_compile_features(upager_api INTERFACE cxx_std_17)

install(TARGETS ${UPAGER_INSTALL_LIBRARIES}
        EXPORT upagerTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/runtime/include/upager
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(TARGETS upager_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# --- CMake package.
install(EXPORT upagerTargets
        NAMESPACE upager::
        FILE upagerTargets.cmake
        DESTINATION ${UPAGER_INSTALL_CMAKEDIR})
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/upagerConfig.cmake.in
  ${PROJECT_BINARY_DIR}/upagerConfig.cmake
  INSTALL_DESTINATION ${UPAGER_INSTALL_CMAKEDIR})
# 0.x: a minor release may change the API.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/upagerConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/upagerConfig.cmake
              ${PROJECT_BINARY_DIR}/upagerConfigVersion.cmake
        DESTINATION ${UPAGER_INSTALL_CMAKEDIR})

# --- pkg-config. Static libraries carry no dependency information, so
# upager.pc lists every Abseil module the installed libraries link (public
# or private), read from the targets so that it follows the CMakeLists.
set(_upager_absl_modules)
foreach(_target IN LISTS UPAGER_INSTALL_LIBRARIES)
  get_target_property(_type ${_target} TYPE)
  if(_type STREQUAL "INTERFACE_LIBRARY")
    get_target_property(_libs ${_target} INTERFACE_LINK_LIBRARIES)
  else()
    get_target_property(_libs ${_target} LINK_LIBRARIES)
  endif()
  foreach(_lib IN LISTS _libs)
    if(_lib MATCHES "^absl::([a-z0-9_]+)$")
      list(APPEND _upager_absl_modules "absl_${CMAKE_MATCH_1}")
    endif()
  endforeach()
endforeach()
list(REMOVE_DUPLICATES _upager_absl_modules)
list(SORT _upager_absl_modules)
string(JOIN ", " UPAGER_PC_REQUIRES "liburing >= 2.3" ${_upager_absl_modules})
# Relocatable: the prefix is found from the .pc file's own directory, so
# `cmake --install --prefix P` works for any P chosen after configuring.
file(RELATIVE_PATH UPAGER_PC_TO_PREFIX
     /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" UPAGER_PC_TO_PREFIX "${UPAGER_PC_TO_PREFIX}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/upager.pc.in
               ${PROJECT_BINARY_DIR}/upager.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/upager.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
