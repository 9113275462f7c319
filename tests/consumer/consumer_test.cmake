# Tests that dagpt works for a downstream project (included from tests/CMakeLists.txt):
#   dagpt.consumer.install      installs this build of dagpt into ${CMAKE_BINARY_DIR}/consumer/prefix
#   dagpt.consumer.build        configures + builds tests/consumer against that prefix (find_package)
#   dagpt.consumer.run          runs it
#   dagpt.consumer.subdir_build configures + builds tests/consumer with add_subdirectory(<dagpt source>)
#   dagpt.consumer.subdir_run   runs that one
# The fixtures order them under ctest -j. The consumer builds with this build's compiler, generator, build
# type and flags (so the asan preset builds it sanitized too). The run tests pass on exit code 0 only (no
# output regex, which would make ctest ignore a sanitizer's exit code). Label "consumer": ctest -LE consumer
# skips them all.

if(NOT DAGPT_INSTALL)
  message(STATUS "dagpt: consumer tests skipped (DAGPT_INSTALL is OFF, nothing to install)")
  return()
endif()

set(_dagpt_consumer_root ${CMAKE_BINARY_DIR}/consumer)
set(_dagpt_consumer_prefix ${_dagpt_consumer_root}/prefix)
get_property(_dagpt_multi_config GLOBAL PROPERTY GENERATOR_IS_MULTI_CONFIG)
if(_dagpt_multi_config)
  set(_dagpt_consumer_config $<CONFIG>)
  set(_dagpt_consumer_exe_dir $<CONFIG>/)
  set(_dagpt_consumer_config_flags_arg "")
else()
  set(_dagpt_consumer_config ${CMAKE_BUILD_TYPE})
  set(_dagpt_consumer_exe_dir "")
  string(TOUPPER "${CMAKE_BUILD_TYPE}" _dagpt_consumer_config_upper)
  set(_dagpt_consumer_config_flags_arg
      "-DCXX_FLAGS_CONFIG=${CMAKE_CXX_FLAGS_${_dagpt_consumer_config_upper}}")
endif()

# Arguments shared by both consumer builds; consumer_step.cmake forwards them to the consumer's configure.
set(_dagpt_consumer_args
  -DSOURCE_DIR=${CMAKE_CURRENT_LIST_DIR}
  -DGENERATOR=${CMAKE_GENERATOR}
  -DMAKE_PROGRAM=${CMAKE_MAKE_PROGRAM}
  -DCONFIG=${_dagpt_consumer_config}
  -DCXX_COMPILER=${CMAKE_CXX_COMPILER}
  -DCXX_FLAGS=${CMAKE_CXX_FLAGS}
  ${_dagpt_consumer_config_flags_arg}
  -DEXE_LINKER_FLAGS=${CMAKE_EXE_LINKER_FLAGS}
  -DEigen3_DIR=${Eigen3_DIR}
  -Dfmt_DIR=${fmt_DIR})

add_test(NAME dagpt.consumer.install
  COMMAND ${CMAKE_COMMAND} -DSTEP=install -DDAGPT_BUILD_DIR=${dagpt_BINARY_DIR}
          -DPREFIX=${_dagpt_consumer_prefix} -DCONFIG=${_dagpt_consumer_config}
          -DINCLUDEDIR=${CMAKE_INSTALL_INCLUDEDIR} -DCMAKEDIR=${DAGPT_INSTALL_CMAKEDIR}
          -P ${CMAKE_CURRENT_LIST_DIR}/consumer_step.cmake)
set_tests_properties(dagpt.consumer.install PROPERTIES FIXTURES_SETUP dagpt_installed)

add_test(NAME dagpt.consumer.build
  COMMAND ${CMAKE_COMMAND} -DSTEP=build ${_dagpt_consumer_args} -DPREFIX=${_dagpt_consumer_prefix}
          -DBINARY_DIR=${_dagpt_consumer_root}/find_package
          -P ${CMAKE_CURRENT_LIST_DIR}/consumer_step.cmake)
set_tests_properties(dagpt.consumer.build PROPERTIES
  FIXTURES_REQUIRED dagpt_installed FIXTURES_SETUP dagpt_consumer_built)

add_test(NAME dagpt.consumer.run COMMAND ${_dagpt_consumer_root}/find_package/${_dagpt_consumer_exe_dir}app)
set_tests_properties(dagpt.consumer.run PROPERTIES FIXTURES_REQUIRED dagpt_consumer_built)

add_test(NAME dagpt.consumer.subdir_build
  COMMAND ${CMAKE_COMMAND} -DSTEP=build ${_dagpt_consumer_args} -DDAGPT_SOURCE_DIR=${dagpt_SOURCE_DIR}
          -DBINARY_DIR=${_dagpt_consumer_root}/add_subdirectory
          -P ${CMAKE_CURRENT_LIST_DIR}/consumer_step.cmake)
set_tests_properties(dagpt.consumer.subdir_build PROPERTIES FIXTURES_SETUP dagpt_consumer_subdir_built)

add_test(NAME dagpt.consumer.subdir_run
  COMMAND ${_dagpt_consumer_root}/add_subdirectory/${_dagpt_consumer_exe_dir}app)
set_tests_properties(dagpt.consumer.subdir_run PROPERTIES FIXTURES_REQUIRED dagpt_consumer_subdir_built)

set_tests_properties(dagpt.consumer.install dagpt.consumer.build dagpt.consumer.run
  dagpt.consumer.subdir_build dagpt.consumer.subdir_run PROPERTIES LABELS consumer)
