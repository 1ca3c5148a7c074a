# Runs one planted-bug sweep and judges it (tests/planted/CMakeLists.txt):
#
#   cmake -DSIM=<moonpool-sim-planted> -DBUG=<name or empty>
#         -DEXPECT=<invariant regex> -DARGS="<sweep arguments>"
#         -P run_planted_sweep.cmake
#
# With BUG empty (the clean run): passes when the sweep passes, coverage
# requirements included. With BUG: passes only when the sweep exits 1 having
# reported a seed that broke an invariant matching EXPECT ("invariant
# <name>:" in a FAILED seed's "broken:" line). A crash, a sanitizer report,
# a coverage hole alone, or only other invariants broken is a failure: the
# test must show that the sweep catches the bug through the invariant meant
# for it. Either way it prints which invariants broke at which seeds.
cmake_minimum_required(VERSION 3.25)

foreach(v IN ITEMS SIM ARGS)
  if(NOT DEFINED ${v} OR "${${v}}" STREQUAL "")
    message(FATAL_ERROR "run_planted_sweep.cmake: -D${v}= is required")
  endif()
endforeach()
separate_arguments(args UNIX_COMMAND "${ARGS}")

set(ENV{MOONPOOL_PLANTED_BUG} "${BUG}")
if(BUG STREQUAL "")
  unset(ENV{MOONPOOL_PLANTED_BUG})
endif()
string(TIMESTAMP t0 "%s")
execute_process(COMMAND ${SIM} ${args}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(TIMESTAMP t1 "%s")
math(EXPR seconds "${t1} - ${t0}")

# Which invariants broke, and at which seeds.
set(caught_seeds)
set(invariants)
# (A ';' in a message would split the list of matches.)
string(REPLACE ";" "," text "${out}")
string(REGEX MATCHALL "seed [0-9]+ FAILED[^\n]*\n  broken: [^\n]*" failures
       "${text}")
foreach(f IN LISTS failures)
  string(REGEX MATCH "^seed ([0-9]+)" _ "${f}")
  set(seed ${CMAKE_MATCH_1})
  if(f MATCHES "invariant ([A-Za-z0-9_.]+)")
    set(name ${CMAKE_MATCH_1})
  else()
    set(name "not_an_invariant")
  endif()
  list(APPEND invariants "${name}")
  list(APPEND seeds_of_${name} ${seed})
  if(NOT BUG STREQUAL "" AND name MATCHES "^(${EXPECT})$")
    list(APPEND caught_seeds ${seed})
  endif()
endforeach()
list(REMOVE_DUPLICATES invariants)
set(summary "")
foreach(name IN LISTS invariants)
  list(LENGTH seeds_of_${name} n)
  list(SUBLIST seeds_of_${name} 0 12 some)
  list(JOIN some " " some)
  string(APPEND summary "\n  invariant ${name}: ${n} seeds (${some}")
  if(n GREATER 12)
    string(APPEND summary " ...")
  endif()
  string(APPEND summary ")")
endforeach()
string(REGEX MATCH "== summary:[^\n]*" line "${out}")

set(label "clean")
if(NOT BUG STREQUAL "")
  set(label "planted bug ${BUG}")
endif()
message("${label}: ${SIM} ${ARGS}")
message("  exit ${rc} after ${seconds} s; ${line}${summary}")

set(sanitizer "AddressSanitizer|LeakSanitizer|runtime error:")
if(out MATCHES "${sanitizer}" OR err MATCHES "${sanitizer}")
  message("${out}\n${err}")
  message(FATAL_ERROR "${label}: the sweep crashed (sanitizer report above)")
endif()

if(BUG STREQUAL "")
  if(NOT rc EQUAL 0)
    message("${out}\n${err}")
    message(FATAL_ERROR "clean: the sweep failed without any planted bug")
  endif()
  message("clean: the sweep passes, with its coverage")
  return()
endif()

list(LENGTH caught_seeds caught)
if(NOT rc EQUAL 1 OR caught EQUAL 0)
  message("${out}\n${err}")
  message(FATAL_ERROR "${label}: NOT caught by invariant ${EXPECT} "
                      "(exit ${rc})")
endif()
list(LENGTH caught_seeds n)
list(SUBLIST caught_seeds 0 12 first)
list(JOIN first " " first)
message("${label}: caught by invariant ${EXPECT} at ${n} seeds: ${first}")
