# Install.Stage: installs the build tree into a fresh prefix and checks
# that every piece an application needs is there.
#   cmake -DBUILD_DIR=<build> -DPREFIX=<prefix> -DLIBDIR=<lib> -P stage.cmake
file(REMOVE_RECURSE "${PREFIX}")
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}"
                        --prefix "${PREFIX}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc}):\n${out}\n${err}")
endif()
foreach(f include/upager/upager.h include/upager/runtime.h
          include/upager/status_macros.h
          ${LIBDIR}/libupager.a ${LIBDIR}/libupager_os.a
          ${LIBDIR}/libupager_pager.a ${LIBDIR}/libupager_backing.a
          ${LIBDIR}/cmake/upager/upagerConfig.cmake
          ${LIBDIR}/cmake/upager/upagerConfigVersion.cmake
          ${LIBDIR}/cmake/upager/upagerTargets.cmake
          ${LIBDIR}/pkgconfig/upager.pc bin/upager)
  if(NOT EXISTS "${PREFIX}/${f}")
    message(FATAL_ERROR "not installed: ${PREFIX}/${f}")
  endif()
endforeach()
# The installed tool runs from the prefix.
execute_process(COMMAND "${PREFIX}/bin/upager" --help
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "\n  probe ")
  message(FATAL_ERROR "installed bin/upager --help failed (${rc}):\n${out}${err}")
endif()
message(STATUS "installed into ${PREFIX}")
