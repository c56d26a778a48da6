# Sanitizer builds, chosen with one cache variable:
#
#   cmake -B build-asan -DCMAKE_CXX_COMPILER=clang++ -DUPAGER_SANITIZE=address,undefined
#   cmake -B build-tsan -DCMAKE_CXX_COMPILER=clang++ -DUPAGER_SANITIZE=thread
#
# Every target of the tree (library, tool, tests, samples, benchmarks) is
# compiled and linked with the same -fsanitize list. Abseil, GoogleTest and
# liburing come from Debian and are not instrumented: ASan and UBSan still
# see every access our code makes; for TSan, absl::Mutex is annotated by
# tsan_absl_mutex.cc (below), without which every guarded access would be
# reported as a race.
# scripts/sanitizers.sh builds and runs these trees as part of command (2).
set(UPAGER_SANITIZE "" CACHE STRING
    "Comma-separated -fsanitize list (address,undefined or thread); empty: none")

if(UPAGER_SANITIZE)
  string(REPLACE ";" "," _upager_sanitize "${UPAGER_SANITIZE}")
  if(_upager_sanitize MATCHES "thread" AND _upager_sanitize MATCHES "address")
    message(FATAL_ERROR
            "UPAGER_SANITIZE=${UPAGER_SANITIZE}: thread and address cannot be combined")
  endif()
  add_compile_options(-fsanitize=${_upager_sanitize} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${_upager_sanitize})
  if(_upager_sanitize MATCHES "undefined")
    # A UBSan report fails the test that caused it instead of scrolling past.
    add_compile_options(-fno-sanitize-recover=undefined)
  endif()
  if(_upager_sanitize MATCHES "thread")
    add_library(upager_tsan_absl_mutex OBJECT
                ${CMAKE_CURRENT_LIST_DIR}/tsan_absl_mutex.cc)
    # It defines absl::Mutex's lock functions by forwarding them, which the
    # thread-safety analysis cannot follow.
    target_compile_options(upager_tsan_absl_mutex PRIVATE
                           $<$<CXX_COMPILER_ID:Clang>:-Wno-thread-safety-analysis>)
    target_link_libraries(upager_tsan_absl_mutex PRIVATE absl::synchronization)
    # Linked into every executable, once all of them exist.
    function(_upager_tsan_link_executables)
      set(dirs ${PROJECT_SOURCE_DIR})
      while(dirs)
        list(POP_FRONT dirs dir)
        get_property(subdirs DIRECTORY ${dir} PROPERTY SUBDIRECTORIES)
        list(APPEND dirs ${subdirs})
        get_property(targets DIRECTORY ${dir} PROPERTY BUILDSYSTEM_TARGETS)
        foreach(target IN LISTS targets)
          get_target_property(type ${target} TYPE)
          if(type STREQUAL "EXECUTABLE")
            target_link_libraries(${target} PRIVATE upager_tsan_absl_mutex
                                  ${CMAKE_DL_LIBS})
          endif()
        endforeach()
      endwhile()
    endfunction()
    cmake_language(DEFER DIRECTORY ${PROJECT_SOURCE_DIR}
                   CALL _upager_tsan_link_executables)
  endif()
endif()
