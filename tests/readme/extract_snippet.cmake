# Copies the first ```cpp block after a README heading into a file, so a test
# can compile the README's own code (README drift then fails the build).
#
#   cmake -DREADME=<README.md> -DHEADING=<"## API tour"> -DOUT=<file>
#         -P extract_snippet.cmake
#
# The output is rewritten only when it changes, so an unrelated README edit
# recompiles nothing.

# Sets ${out} to where `needle` starts in `text`, or stops naming `what`.
function(find_or_fail text needle out what)
  string(FIND "${text}" "${needle}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${README}: ${what}")
  endif()
  set(${out} ${at} PARENT_SCOPE)
endfunction()

file(READ "${README}" text)
find_or_fail("${text}" "\n${HEADING}\n" at "no heading '${HEADING}'")
string(SUBSTRING "${text}" ${at} -1 text)
find_or_fail("${text}" "\n```cpp\n" start
             "no ```cpp block after '${HEADING}'")
math(EXPR start "${start} + 8")
string(SUBSTRING "${text}" ${start} -1 text)
find_or_fail("${text}" "\n```" end
             "the ```cpp block after '${HEADING}' is not closed")
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
