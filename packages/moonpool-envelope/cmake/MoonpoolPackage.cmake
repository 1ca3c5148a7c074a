# Helpers shared by every moonpool package. moonpool-envelope, the bottom of
# the stack, installs this file, so each package above it gets the helpers from
# find_package(moonpool-envelope) (directly or through the layer it needs), in
# the superbuild and standalone alike.
include_guard(GLOBAL)
include(CMakePackageConfigHelpers)
include(GNUInstallDirs)

# moonpool_set_warnings(<target>): the warning set every package compiles with.
function(moonpool_set_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Wpedantic -Wshadow
      -Wnon-virtual-dtor -Wno-unused-parameter>)
endfunction()

# moonpool_install_package(<layer> TARGETS <t>...): installs the targets, the
# public headers under include/, moonpool-<layer>Config.cmake (from
# cmake/moonpool-<layer>Config.cmake.in) with its version file, and the export
# set moonpool::<...>.
function(moonpool_install_package layer)
  cmake_parse_arguments(ARG "" "" "TARGETS;EXTRA_CMAKE_FILES" ${ARGN})
  set(pkg moonpool-${layer})
  set(cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/${pkg})
  install(TARGETS ${ARG_TARGETS} EXPORT ${pkg}Targets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}/include/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT ${pkg}Targets NAMESPACE moonpool:: DESTINATION ${cmake_dir})
  configure_package_config_file(
    ${CMAKE_CURRENT_SOURCE_DIR}/cmake/${pkg}Config.cmake.in
    ${CMAKE_CURRENT_BINARY_DIR}/${pkg}Config.cmake
    INSTALL_DESTINATION ${cmake_dir})
  write_basic_package_version_file(
    ${CMAKE_CURRENT_BINARY_DIR}/${pkg}ConfigVersion.cmake
    VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
  install(FILES
    ${CMAKE_CURRENT_BINARY_DIR}/${pkg}Config.cmake
    ${CMAKE_CURRENT_BINARY_DIR}/${pkg}ConfigVersion.cmake
    ${ARG_EXTRA_CMAKE_FILES}
    DESTINATION ${cmake_dir})
endfunction()

# moonpool_add_test(<name> LAYER <layer> SOURCES <src>... LIBS <lib>...
#                   [CERTS <fixture> <dir>]):
# one GoogleTest binary, its tests discovered into CTest with label <layer>.
# CERTS: every discovered test requires the CTest fixture <fixture> and sees
# MOONPOOL_TEST_CERTS=<dir> in its environment; the fixture is the one
# moonpool_add_test_certs(<fixture> <dir>) defines (moonpool-driver's
# MoonpoolTestCerts.cmake), which writes the TLS test certificates there.
function(moonpool_add_test name)
  cmake_parse_arguments(ARG "" "LAYER" "SOURCES;LIBS;CERTS" ${ARGN})
  find_package(GTest REQUIRED)
  include(GoogleTest)
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  moonpool_set_warnings(${name})
  set(cert_properties)
  if(DEFINED ARG_CERTS)
    list(LENGTH ARG_CERTS cert_args)
    if(NOT cert_args EQUAL 2)
      message(FATAL_ERROR
        "moonpool_add_test(${name}): CERTS takes <fixture> <dir>, got '${ARG_CERTS}'")
    endif()
    list(GET ARG_CERTS 0 cert_fixture)
    list(GET ARG_CERTS 1 cert_dir)
    set(cert_properties
      FIXTURES_REQUIRED ${cert_fixture}
      ENVIRONMENT MOONPOOL_TEST_CERTS=${cert_dir})
  endif()
  gtest_discover_tests(${name}
    PROPERTIES LABELS ${ARG_LAYER} ${cert_properties}
    DISCOVERY_TIMEOUT 60)
endfunction()
