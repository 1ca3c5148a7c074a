# Test certificates at test time, for the TLS tests of any package above
# moonpool-driver. moonpool-driver installs this file beside its Config file
# and its Config includes it; the superbuild includes it from
# packages/moonpool-driver/CMakeLists.txt. It only defines a function: no
# certificate is made at configure or build time, and none is ever committed
# or installed.
#
# MOONPOOL_MAKE_TEST_CERTS names the script (moonpool-make-test-certs, the
# openssl CLI; its header lists the files it writes). The driver's
# CMakeLists.txt sets it to the source tree's copy, moonpool-driverConfig.cmake
# to the installed one (bin/).
include_guard(GLOBAL)

# moonpool_add_test_certs(<fixture_name> <out_dir> [LABELS <label>...]):
# a CTest test named <fixture_name> that runs the script into <out_dir>, with
# FIXTURES_SETUP <fixture_name>. A test that needs the certificates sets
# FIXTURES_REQUIRED <fixture_name> (moonpool_add_test(... CERTS <fixture>
# <dir>) does, with MOONPOOL_TEST_CERTS=<dir> in its environment), so
# `ctest -R <one test>` makes them first, and every ctest run makes a fresh
# set. Fixture names are global in a superbuild: make them unique per
# package, e.g. moonpool_<layer>_test_certs.
function(moonpool_add_test_certs fixture out_dir)
  cmake_parse_arguments(ARG "" "" "LABELS" ${ARGN})
  if(NOT MOONPOOL_MAKE_TEST_CERTS)
    message(FATAL_ERROR
      "moonpool_add_test_certs: MOONPOOL_MAKE_TEST_CERTS is not set "
      "(find_package(moonpool-driver) or the superbuild sets it)")
  endif()
  find_program(MOONPOOL_BASH bash REQUIRED)
  add_test(NAME ${fixture}
    COMMAND ${MOONPOOL_BASH} ${MOONPOOL_MAKE_TEST_CERTS} ${out_dir})
  set_tests_properties(${fixture} PROPERTIES
    FIXTURES_SETUP ${fixture}
    # openssl makes two CAs and seven EC keys and certificates: well under a
    # second, but a loaded machine is slow.
    TIMEOUT 60)
  if(ARG_LABELS)
    set_tests_properties(${fixture} PROPERTIES LABELS "${ARG_LABELS}")
  endif()
endfunction()
