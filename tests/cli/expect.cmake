# Runs a command and checks its exit code and output, for tests of
# command-line programs that must check both (ctest's PASS_REGULAR_EXPRESSION
# ignores the exit code).
#
#   cmake -DEXIT=<code> [-DSTDOUT_0=<regex> -DSTDOUT_1=...]
#         [-DSTDERR=<regex>] [-DONE_LINE_ERROR=ON]
#         -P expect.cmake -- <program> [args...]
#
# ONE_LINE_ERROR: stderr is exactly one line and stdout is empty (the tool's
# contract for a bad command line).
set(cmd)
set(seen_separator OFF)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(seen_separator)
    list(APPEND cmd "${CMAKE_ARGV${i}}")
  elseif("${CMAKE_ARGV${i}}" STREQUAL "--")
    set(seen_separator ON)
  endif()
endforeach()
if(NOT cmd)
  message(FATAL_ERROR "expect.cmake: no command after --")
endif()

execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err TIMEOUT 120)
string(JOIN " " shown ${cmd})
set(report "command: ${shown}\nexit: ${rc}\n--- stdout:\n${out}\n--- stderr:\n${err}")

if(NOT "${rc}" STREQUAL "${EXIT}")
  message(FATAL_ERROR "expected exit code ${EXIT}\n${report}")
endif()
set(i 0)
while(DEFINED STDOUT_${i})
  if(NOT out MATCHES "${STDOUT_${i}}")
    message(FATAL_ERROR "stdout does not match '${STDOUT_${i}}'\n${report}")
  endif()
  math(EXPR i "${i} + 1")
endwhile()
if(DEFINED STDERR AND NOT err MATCHES "${STDERR}")
  message(FATAL_ERROR "stderr does not match '${STDERR}'\n${report}")
endif()
if(ONE_LINE_ERROR)
  string(REGEX MATCHALL "\n" newlines "${err}")
  list(LENGTH newlines lines)
  if(NOT lines EQUAL 1 OR NOT err MATCHES "\n$")
    message(FATAL_ERROR "expected exactly one line on stderr\n${report}")
  endif()
  if(NOT out STREQUAL "")
    message(FATAL_ERROR "expected nothing on stdout\n${report}")
  endif()
endif()
message(STATUS "ok: ${shown} (exit ${rc})")
