# Install.ConsumerCMake / Install.ConsumerPkgConfig: builds consumer/ against
# the prefix Install.Stage filled, the way an application would, runs it and
# checks that it printed OK.
#   cmake -DMODE=cmake|pkg-config -DPREFIX=<prefix> -DLIBDIR=<lib>
#         -DSOURCE_DIR=<consumer> -DWORK_DIR=<scratch> -DCXX=<compiler>
#         [-DGENERATOR=<cmake generator>] -P consumer.cmake
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    string(JOIN " " shown ${ARGN})
    message(FATAL_ERROR "${what} failed (${rc}): ${shown}\n${out}\n${err}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
# Only the installed package may be found: nothing from the build tree.
set(ENV{PKG_CONFIG_PATH} "${PREFIX}/${LIBDIR}/pkgconfig")

if(MODE STREQUAL "cmake")
  run("configure" "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${WORK_DIR}"
      -G "${GENERATOR}" -DCMAKE_BUILD_TYPE=Release
      "-DCMAKE_CXX_COMPILER=${CXX}" "-DCMAKE_PREFIX_PATH=${PREFIX}"
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  run("build" "${CMAKE_COMMAND}" --build "${WORK_DIR}")
elseif(MODE STREQUAL "pkg-config")
  run("pkg-config" pkg-config --cflags --libs upager)
  string(STRIP "${run_output}" flags)
  separate_arguments(flags UNIX_COMMAND "${flags}")
  run("compile" "${CXX}" -std=c++20 -O2 "${SOURCE_DIR}/main.cc" ${flags}
      -o "${WORK_DIR}/consumer")
else()
  message(FATAL_ERROR "MODE must be cmake or pkg-config, not '${MODE}'")
endif()

run("the consumer" "${WORK_DIR}/consumer")
if(NOT run_output MATCHES "^OK: ")
  message(FATAL_ERROR "the consumer did not print OK:\n${run_output}")
endif()
message(STATUS "${MODE} consumer: ${run_output}")
