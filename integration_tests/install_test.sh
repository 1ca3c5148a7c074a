#!/usr/bin/env bash
# The install integration test (CTest: moonpool_install, label integration):
#   1. `cmake --install` the superbuild's build tree into a fresh prefix and
#      check the installed layout of every layer the superbuild builds;
#   2. configure, build and run integration_tests/find_package_consumer out of
#      tree against that prefix (find_package(moonpool-wire), moonpool::wire;
#      find_package(moonpool-transport) with a user's own .capnp schema);
#   3. configure and build every packages/moonpool-<layer> standalone against
#      that prefix (BUILD_TESTING=OFF), so each layer finds the ones below it
#      installed;
#   3b. when moonpool-driver is installed: a project that finds it runs
#      moonpool_add_test_certs() (the installed moonpool-make-test-certs);
#   4. when moonpool-chaos is installed: configure and build
#      integration_tests/sim_consumer (the chaos README's own workload, runner
#      and GoogleTest sweep) against that prefix and run it
#      (sim_consumer_check.sh).
# Everything is built with the superbuild's compiler, flags and build type
# (the sanitizers of the dev preset included), with Ninja. The temporary
# directory is removed on success and kept, with its logs, on failure.
#
# Settings come from the environment (integration_tests/CMakeLists.txt sets
# them from the superbuild's cache):
#   MOONPOOL_SOURCE_DIR, MOONPOOL_BUILD_DIR        required
#   MOONPOOL_LAYERS        the layers the superbuild installs, space separated
#   MOONPOOL_CMAKE         cmake to use (default: cmake on PATH)
#   MOONPOOL_CONFIG        build type / configuration (may be empty)
#   MOONPOOL_CXX_COMPILER, MOONPOOL_C_COMPILER, MOONPOOL_CXX_FLAGS,
#   MOONPOOL_C_FLAGS, MOONPOOL_EXE_LINKER_FLAGS, MOONPOOL_SHARED_LINKER_FLAGS,
#   MOONPOOL_CXX_COMPILER_LAUNCHER, MOONPOOL_MAKE_PROGRAM   passed through
#   MOONPOOL_INSTALL_LIBDIR, MOONPOOL_INSTALL_INCLUDEDIR   (default lib, include)
#   MOONPOOL_KEEP_TMP=1    keep the temporary directory even on success
set -euo pipefail

# The stack, bottom first (DESIGN.md section 2). Packages found under
# packages/ with another name are built after these, in name order.
readonly STACK_ORDER=(envelope wire protocol driver transport chaos)

fail() {
  echo "install_test: FAIL: $*" >&2
  exit 1
}

: "${MOONPOOL_SOURCE_DIR:?set MOONPOOL_SOURCE_DIR to the moonpool-cpp source tree}"
: "${MOONPOOL_BUILD_DIR:?set MOONPOOL_BUILD_DIR to the superbuild build tree}"
cmake_cmd=${MOONPOOL_CMAKE:-cmake}
config=${MOONPOOL_CONFIG:-}
libdir=${MOONPOOL_INSTALL_LIBDIR:-lib}
includedir=${MOONPOOL_INSTALL_INCLUDEDIR:-include}
read -r -a installed_layers <<<"${MOONPOOL_LAYERS:-envelope wire}"

if [[ ! -f ${MOONPOOL_BUILD_DIR}/cmake_install.cmake ]]; then
  fail "${MOONPOOL_BUILD_DIR} is not a configured build tree"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/moonpool-install-test.XXXXXX")
prefix=${tmp}/prefix
cleanup() {
  local rc=$?
  if [[ ${rc} -eq 0 && ${MOONPOOL_KEEP_TMP:-0} != 1 ]]; then
    rm -rf "${tmp}"
  else
    echo "install_test: kept ${tmp} (logs: ${tmp}/*.log)" >&2
  fi
}
trap cleanup EXIT

# The cache settings every configure below gets: the superbuild's toolchain.
configure_args=(-G Ninja --no-warn-unused-cli
  "-DCMAKE_PREFIX_PATH=${prefix}"
  "-DCMAKE_BUILD_TYPE=${config}"
  "-DCMAKE_CXX_FLAGS=${MOONPOOL_CXX_FLAGS:-}"
  "-DCMAKE_C_FLAGS=${MOONPOOL_C_FLAGS:-}"
  "-DCMAKE_EXE_LINKER_FLAGS=${MOONPOOL_EXE_LINKER_FLAGS:-}"
  "-DCMAKE_SHARED_LINKER_FLAGS=${MOONPOOL_SHARED_LINKER_FLAGS:-}"
  # Only the prefix, never a package registry entry for a build tree.
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
# pass_if_set <cache variable> <value>: adds -D<var>=<value> when not empty.
pass_if_set() {
  if [[ -n $2 ]]; then configure_args+=("-D$1=$2"); fi
}
pass_if_set CMAKE_CXX_COMPILER "${MOONPOOL_CXX_COMPILER:-}"
pass_if_set CMAKE_C_COMPILER "${MOONPOOL_C_COMPILER:-}"
pass_if_set CMAKE_CXX_COMPILER_LAUNCHER "${MOONPOOL_CXX_COMPILER_LAUNCHER:-}"
pass_if_set CMAKE_MAKE_PROGRAM "${MOONPOOL_MAKE_PROGRAM:-}"

# step <name> <command>...: runs the command with its output in
# ${tmp}/<name>.log; on failure prints the command and the log's tail.
step() {
  local name=$1
  shift
  local log=${tmp}/${name}.log
  local start=${SECONDS}
  if "$@" >"${log}" 2>&1; then
    echo "install_test: ok: ${name} ($((SECONDS - start)) s)"
  else
    local rc=$?
    echo "install_test: FAIL: ${name} (exit ${rc})" >&2
    echo "  command: $*" >&2
    echo "  last lines of ${log}:" >&2
    tail -n 60 "${log}" | sed 's/^/  | /' >&2
    exit 1
  fi
}

# check_file <path> <what>: the installed tree has <path>.
missing=0
check_file() {
  if [[ ! -f ${prefix}/$1 ]]; then
    echo "install_test: FAIL: not installed: ${prefix}/$1 ($2)" >&2
    missing=$((missing + 1))
  fi
}

# Configured value of <var> in a build tree's CMakeCache.txt.
cache_value() {
  sed -n "s|^$2:[A-Z]*=||p" "$1/CMakeCache.txt"
}

echo "install_test: source ${MOONPOOL_SOURCE_DIR}"
echo "install_test: build  ${MOONPOOL_BUILD_DIR} (config '${config}')"
echo "install_test: prefix ${prefix}"

# --- 1. Install, and check the layout. --------------------------------------
install_args=(--install "${MOONPOOL_BUILD_DIR}" --prefix "${prefix}")
if [[ -n ${config} ]]; then install_args+=(--config "${config}"); fi
step install "${cmake_cmd}" "${install_args[@]}"

for layer in "${installed_layers[@]}"; do
  pkg=moonpool-${layer}
  src_include=${MOONPOOL_SOURCE_DIR}/packages/${pkg}/include
  # Every public file (headers, schemas) of the package, and the generated
  # header of every schema.
  if [[ -d ${src_include} ]]; then
    while IFS= read -r -d '' file; do
      rel=${file#"${src_include}"/}
      check_file "${includedir}/${rel}" "public file of ${pkg}"
      if [[ ${rel} == *.capnp ]]; then
        check_file "${includedir}/${rel}.h" "generated header of ${rel}"
      fi
    done < <(find "${src_include}" -type f -print0)
  fi
  if ! compgen -G "${prefix}/${includedir}/moonpool/${layer}/*.h" >/dev/null; then
    echo "install_test: FAIL: no headers in ${includedir}/moonpool/${layer}/" >&2
    missing=$((missing + 1))
  fi
  for f in Config ConfigVersion Targets; do
    check_file "${libdir}/cmake/${pkg}/${pkg}${f}.cmake" "package files of ${pkg}"
  done
  if ! compgen -G "${prefix}/${libdir}/libmoonpool_${layer}.*" >/dev/null; then
    echo "install_test: FAIL: no library ${libdir}/libmoonpool_${layer}.*" >&2
    missing=$((missing + 1))
  fi
done
if [[ ${missing} -ne 0 ]]; then
  echo "install_test: installed files:" >&2
  (cd "${prefix}" && find . -type f | sort | sed 's/^/  | /') >&2
  fail "${missing} problem(s) in the installed tree"
fi
echo "install_test: ok: installed layout of: ${installed_layers[*]}"

# --- 2. The find_package consumer. ------------------------------------------
consumer_src=${MOONPOOL_SOURCE_DIR}/integration_tests/find_package_consumer
consumer_build=${tmp}/consumer
step consumer-configure "${cmake_cmd}" -S "${consumer_src}" -B "${consumer_build}" \
  "${configure_args[@]}"
# The packages must come from the prefix, not from some other install.
for pkg in moonpool-wire moonpool-envelope; do
  dir=$(cache_value "${consumer_build}" "${pkg}_DIR")
  if [[ ${dir} != "${prefix}"/* ]]; then
    fail "consumer found ${pkg} in '${dir}', not in ${prefix}"
  fi
done
step consumer-build "${cmake_cmd}" --build "${consumer_build}"
echo "install_test: running the consumer:"
if ! "${consumer_build}/find_package_consumer" 2>&1 | sed 's/^/  | /'; then
  fail "find_package_consumer failed (its output is above)"
fi
# Its second program: moonpool::transport with a schema of its own, compiled
# as the transport README shows.
if ! "${consumer_build}/transport_consumer" 2>&1 | sed 's/^/  | /'; then
  fail "transport_consumer failed (its output is above)"
fi

# --- 3. Each package standalone. --------------------------------------------
packages=()
for layer in "${STACK_ORDER[@]}"; do
  packages+=("moonpool-${layer}")
done
for dir in "${MOONPOOL_SOURCE_DIR}"/packages/moonpool-*/; do
  name=$(basename "${dir}")
  if [[ " ${packages[*]} " != *" ${name} "* ]]; then packages+=("${name}"); fi
done
built=()
for pkg in "${packages[@]}"; do
  pkg_src=${MOONPOOL_SOURCE_DIR}/packages/${pkg}
  [[ -d ${pkg_src} ]] || continue
  if [[ ! -f ${pkg_src}/CMakeLists.txt ]]; then
    echo "install_test: skipped: ${pkg} (no CMakeLists.txt yet)"
    continue
  fi
  pkg_build=${tmp}/${pkg#moonpool-}-standalone
  step "${pkg}-standalone-configure" "${cmake_cmd}" -S "${pkg_src}" -B "${pkg_build}" \
    "${configure_args[@]}" -DBUILD_TESTING=OFF
  step "${pkg}-standalone-build" "${cmake_cmd}" --build "${pkg_build}"
  built+=("${pkg}")
done
if [[ ${#built[@]} -eq 0 ]]; then
  fail "no package under ${MOONPOOL_SOURCE_DIR}/packages"
fi

# --- 3b. The TLS test certificates from the installed tree. ----------------
# moonpool-driver installs moonpool-make-test-certs and MoonpoolTestCerts.cmake;
# a project that finds the package gets moonpool_add_test_certs(), whose
# fixture must run the installed script (the layers above use it when their
# tests are built standalone).
if [[ " ${installed_layers[*]} " == *" driver "* ]]; then
  [[ -x ${prefix}/bin/moonpool-make-test-certs ]] ||
    fail "not installed: ${prefix}/bin/moonpool-make-test-certs"
  certs_src=${tmp}/certs-consumer-src
  certs_build=${tmp}/certs-consumer
  mkdir -p "${certs_src}"
  cat >"${certs_src}/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(certs_consumer LANGUAGES C CXX)
find_package(moonpool-driver 0.1 REQUIRED)
enable_testing()
moonpool_add_test_certs(certs_consumer_certs ${CMAKE_BINARY_DIR}/certs)
add_test(NAME certs_consumer_has_them
  COMMAND test -s ${CMAKE_BINARY_DIR}/certs/ca.pem -a -s ${CMAKE_BINARY_DIR}/certs/server.key)
set_tests_properties(certs_consumer_has_them PROPERTIES
  FIXTURES_REQUIRED certs_consumer_certs)
file(WRITE ${CMAKE_BINARY_DIR}/script_path.txt "${MOONPOOL_MAKE_TEST_CERTS}")
CMAKE
  step certs-consumer-configure "${cmake_cmd}" -S "${certs_src}" -B "${certs_build}" \
    "${configure_args[@]}"
  script=$(cat "${certs_build}/script_path.txt")
  [[ ${script} == "${prefix}"/* ]] ||
    fail "MOONPOOL_MAKE_TEST_CERTS is '${script}', not in ${prefix}"
  ctest_cmd=ctest
  if [[ ${cmake_cmd} == */* ]]; then ctest_cmd=$(dirname "${cmake_cmd}")/ctest; fi
  step certs-consumer-ctest "${ctest_cmd}" --test-dir "${certs_build}" \
    --output-on-failure
fi

# --- 4. The chaos README's example: a user's workload and runner. ----------
if [[ " ${installed_layers[*]} " == *" chaos "* ]]; then
  sim_build=${tmp}/sim_consumer
  step sim-consumer-configure "${cmake_cmd}" \
    -S "${MOONPOOL_SOURCE_DIR}/integration_tests/sim_consumer" \
    -B "${sim_build}" "${configure_args[@]}"
  dir=$(cache_value "${sim_build}" moonpool-chaos_DIR)
  if [[ ${dir} != "${prefix}"/* ]]; then
    fail "sim_consumer found moonpool-chaos in '${dir}', not in ${prefix}"
  fi
  step sim-consumer-build "${cmake_cmd}" --build "${sim_build}"
  step sim-consumer-run bash \
    "${MOONPOOL_SOURCE_DIR}/integration_tests/sim_consumer_check.sh" "${sim_build}"
  sed 's/^/  | /' "${tmp}/sim-consumer-run.log"

  # The key-value example is written as a user would write it: it builds
  # alone against the installed packages too (its programs and simulation).
  kv_build=${tmp}/examples_kv
  step kv-example-configure "${cmake_cmd}" \
    -S "${MOONPOOL_SOURCE_DIR}/examples/kv" -B "${kv_build}" \
    "${configure_args[@]}" -DBUILD_TESTING=OFF
  dir=$(cache_value "${kv_build}" moonpool-transport_DIR)
  if [[ ${dir} != "${prefix}"/* ]]; then
    fail "examples/kv found moonpool-transport in '${dir}', not in ${prefix}"
  fi
  step kv-example-build "${cmake_cmd}" --build "${kv_build}"
  for program in moonpool-kv-server moonpool-kv moonpool-kv-sim; do
    [[ -x ${kv_build}/${program} ]] || fail "examples/kv built no ${program}"
  done
fi

echo "install_test: PASSED (standalone: ${built[*]})"
