# ablate_test(NAME SOURCES a_test.cc ... LIBS lib ... [LABELS label ...] [TIMEOUT seconds])
# Builds one GoogleTest binary and registers each of its tests with CTest.
function(ablate_test name)
  if(NOT ABLATE_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main GTest::gmock)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  gtest_discover_tests(${name}
    DISCOVERY_MODE PRE_TEST
    DISCOVERY_TIMEOUT 60
    WORKING_DIRECTORY ${CMAKE_BINARY_DIR}
    PROPERTIES
      TIMEOUT ${ARG_TIMEOUT}
      LABELS "${ARG_LABELS}"
      # One variable only: gtest_discover_tests splits a list value. The source
      # tree reaches tests at compile time (tests/support, SourceDir()).
      ENVIRONMENT "ABLATE_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
endfunction()
