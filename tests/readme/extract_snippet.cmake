# Copies the first ```cpp block after a README heading into a file, so a test
# can compile the README's own code (README drift then fails the build).
#
#   cmake -DREADME=<README.md> -DHEADING=<"## API tour"> -DOUT=<file>
#         -P extract_snippet.cmake
#
# The output is rewritten only when it changes, so an unrelated README edit
# recompiles nothing.
file(READ "${README}" text)
string(FIND "${text}" "\n${HEADING}\n" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${README}: no heading '${HEADING}'")
endif()
string(SUBSTRING "${text}" ${at} -1 text)
string(FIND "${text}" "\n```cpp\n" start)
if(start EQUAL -1)
  message(FATAL_ERROR "${README}: no ```cpp block after '${HEADING}'")
endif()
math(EXPR start "${start} + 8")
string(SUBSTRING "${text}" ${start} -1 text)
string(FIND "${text}" "\n```" end)
if(end EQUAL -1)
  message(FATAL_ERROR "${README}: the ```cpp block after '${HEADING}' is not closed")
endif()
math(EXPR end "${end} + 1")
string(SUBSTRING "${text}" 0 ${end} code)
set(code "// Generated from ${README} (\"${HEADING}\") by extract_snippet.cmake.\n// Edit the README, not this file.\n${code}")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
  if(old STREQUAL code)
    return()
  endif()
endif()
file(WRITE "${OUT}" "${code}")
