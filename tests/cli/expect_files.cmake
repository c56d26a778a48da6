# expect.cmake plus checks on the files the command leaves behind, for
# commands that write output files (upager bench, upager tour --keep).
#
#   cmake <expect.cmake's -D options> [-DFRESH_DIR=<dir>]
#         [-DFILES=<path>,<path>...] [-DSVG_FILES=<path>,...]
#         [-DABSENT_GLOB=<glob>] [-DPRESENT_GLOB=<glob>]
#         -P expect_files.cmake -- <program> [args...]
#
# FRESH_DIR is emptied (created) before the command runs. After it, every
# path in FILES must exist; every SVG_FILES path must look like a
# standalone SVG document (starts with "<svg ", ends with "</svg>", has
# text, every '&' starts an entity); nothing may match ABSENT_GLOB and
# something must match PRESENT_GLOB.
if(DEFINED FRESH_DIR)
  file(REMOVE_RECURSE "${FRESH_DIR}")
  file(MAKE_DIRECTORY "${FRESH_DIR}")
endif()
include(${CMAKE_CURRENT_LIST_DIR}/expect.cmake)

string(REPLACE "," ";" files "${FILES}")
string(REPLACE "," ";" svgs "${SVG_FILES}")
foreach(f IN LISTS files svgs)
  if(NOT EXISTS "${f}")
    message(FATAL_ERROR "expected file '${f}' does not exist\n${report}")
  endif()
endforeach()
foreach(f IN LISTS svgs)
  file(READ "${f}" svg)
  if(NOT svg MATCHES "^<svg xmlns=\"http://www.w3.org/2000/svg\" ")
    message(FATAL_ERROR "'${f}' does not start with an <svg> element")
  endif()
  if(NOT svg MATCHES "</svg>\n$")
    message(FATAL_ERROR "'${f}' does not end with </svg>")
  endif()
  if(NOT svg MATCHES "<text ")
    message(FATAL_ERROR "'${f}' has no text")
  endif()
  string(REGEX REPLACE "&(amp|lt|gt|quot);" "" unescaped "${svg}")
  if(unescaped MATCHES "&")
    message(FATAL_ERROR "'${f}' has an unescaped '&'")
  endif()
endforeach()
if(DEFINED ABSENT_GLOB)
  file(GLOB left "${ABSENT_GLOB}")
  if(left)
    message(FATAL_ERROR "expected nothing at '${ABSENT_GLOB}', found ${left}")
  endif()
endif()
if(DEFINED PRESENT_GLOB)
  file(GLOB found "${PRESENT_GLOB}")
  if(NOT found)
    message(FATAL_ERROR "expected something at '${PRESENT_GLOB}'")
  endif()
endif()
