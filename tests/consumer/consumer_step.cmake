# Script mode (cmake -P), one step of the consumer tests in consumer_test.cmake. Each step starts from an
# empty directory, so a header removed from dagpt or a changed compiler never hides behind stale files.
#   -DSTEP=install -DDAGPT_BUILD_DIR=<dagpt build> -DPREFIX=<dir> -DINCLUDEDIR=<rel> -DCMAKEDIR=<rel>
#                  [-DCONFIG=<cfg>]
#   -DSTEP=build   -DSOURCE_DIR=<tests/consumer> -DBINARY_DIR=<dir> -DGENERATOR=<g> [-DMAKE_PROGRAM=]
#                  [-DCONFIG=] [-DCXX_COMPILER=] [-DCXX_FLAGS=] [-DCXX_FLAGS_CONFIG=] [-DEXE_LINKER_FLAGS=]
#                  [-DEigen3_DIR=] [-Dfmt_DIR=]
#                  and either -DPREFIX=<installed dagpt> or -DDAGPT_SOURCE_DIR=<dagpt checkout>
cmake_minimum_required(VERSION 3.25)

if(STEP STREQUAL "install")
  file(REMOVE_RECURSE "${PREFIX}")
  set(config_args "")
  if(CONFIG)
    set(config_args --config "${CONFIG}")
  endif()
  execute_process(COMMAND "${CMAKE_COMMAND}" --install "${DAGPT_BUILD_DIR}" --prefix "${PREFIX}"
                          ${config_args}
                  COMMAND_ECHO STDOUT COMMAND_ERROR_IS_FATAL ANY)
  # The package must be complete: headers, config, version file and exported targets.
  foreach(f ${INCLUDEDIR}/dagpt ${CMAKEDIR}/dagptConfig.cmake ${CMAKEDIR}/dagptConfigVersion.cmake
            ${CMAKEDIR}/dagptTargets.cmake)
    if(NOT EXISTS "${PREFIX}/${f}")
      message(FATAL_ERROR "install is missing ${PREFIX}/${f}")
    endif()
  endforeach()

elseif(STEP STREQUAL "build")
  file(REMOVE_RECURSE "${BINARY_DIR}")
  set(args -S "${SOURCE_DIR}" -B "${BINARY_DIR}" -G "${GENERATOR}"
      -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  if(MAKE_PROGRAM)
    list(APPEND args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
  endif()
  if(CONFIG)
    list(APPEND args "-DCMAKE_BUILD_TYPE=${CONFIG}")
    if(DEFINED CXX_FLAGS_CONFIG)  # this build's CMAKE_CXX_FLAGS_<CONFIG>, e.g. the asan preset's -O1 -g
      string(TOUPPER "${CONFIG}" config_upper)
      list(APPEND args "-DCMAKE_CXX_FLAGS_${config_upper}=${CXX_FLAGS_CONFIG}")
    endif()
  endif()
  foreach(var CXX_COMPILER CXX_FLAGS EXE_LINKER_FLAGS)
    if(NOT "${${var}}" STREQUAL "")
      list(APPEND args "-DCMAKE_${var}=${${var}}")
    endif()
  endforeach()
  foreach(var Eigen3_DIR fmt_DIR)
    if(NOT "${${var}}" STREQUAL "")
      list(APPEND args "-D${var}=${${var}}")
    endif()
  endforeach()
  if(DAGPT_SOURCE_DIR)
    list(APPEND args "-DDAGPT_SOURCE_DIR=${DAGPT_SOURCE_DIR}")
  else()
    list(APPEND args "-DCMAKE_PREFIX_PATH=${PREFIX}" "-DDAGPT_EXPECTED_PREFIX=${PREFIX}")
  endif()
  execute_process(COMMAND "${CMAKE_COMMAND}" ${args} COMMAND_ECHO STDOUT COMMAND_ERROR_IS_FATAL ANY)
  set(config_args "")
  if(CONFIG)
    set(config_args --config "${CONFIG}")
  endif()
  execute_process(COMMAND "${CMAKE_COMMAND}" --build "${BINARY_DIR}" ${config_args}
                  COMMAND_ECHO STDOUT COMMAND_ERROR_IS_FATAL ANY)

else()
  message(FATAL_ERROR "consumer_step.cmake: unknown STEP '${STEP}' (install or build)")
endif()
