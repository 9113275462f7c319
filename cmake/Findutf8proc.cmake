# Finds utf8proc (Unicode categories for dagpt::text's GPT-2 pre-tokenizer) and defines the imported target
# utf8proc::utf8proc. Debian's libutf8proc-dev ships a pkg-config file but no CMake package, so this module
# looks for the header and library, with pkg-config's paths as hints when pkg-config is there. It is
# installed next to dagptConfig.cmake, which uses it for the dagpt::text component.
#   utf8proc_FOUND, utf8proc_VERSION, utf8proc_INCLUDE_DIR, utf8proc_LIBRARY

if(TARGET utf8proc::utf8proc)  # defined already, e.g. by utf8proc's own CMake package (2.9 and later)
  set(utf8proc_FOUND TRUE)
  return()
endif()

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_utf8proc QUIET libutf8proc)
endif()

find_path(utf8proc_INCLUDE_DIR NAMES utf8proc.h HINTS ${PC_utf8proc_INCLUDE_DIRS})
find_library(utf8proc_LIBRARY NAMES utf8proc HINTS ${PC_utf8proc_LIBRARY_DIRS})

# The version from the header (the .pc file of Debian's 2.8.0 says 2.6.0).
if(utf8proc_INCLUDE_DIR AND EXISTS "${utf8proc_INCLUDE_DIR}/utf8proc.h")
  file(STRINGS "${utf8proc_INCLUDE_DIR}/utf8proc.h" _utf8proc_version_lines
       REGEX "^#define UTF8PROC_VERSION_(MAJOR|MINOR|PATCH) [0-9]+")
  set(utf8proc_VERSION "")
  foreach(part MAJOR MINOR PATCH)
    string(REGEX REPLACE ".*#define UTF8PROC_VERSION_${part} ([0-9]+).*" "\\1" _utf8proc_${part}
           "${_utf8proc_version_lines}")
  endforeach()
  set(utf8proc_VERSION "${_utf8proc_MAJOR}.${_utf8proc_MINOR}.${_utf8proc_PATCH}")
  unset(_utf8proc_version_lines)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(utf8proc
  REQUIRED_VARS utf8proc_LIBRARY utf8proc_INCLUDE_DIR
  VERSION_VAR utf8proc_VERSION)
mark_as_advanced(utf8proc_INCLUDE_DIR utf8proc_LIBRARY)

if(utf8proc_FOUND AND NOT TARGET utf8proc::utf8proc)
  add_library(utf8proc::utf8proc UNKNOWN IMPORTED)
  set_target_properties(utf8proc::utf8proc PROPERTIES
    IMPORTED_LOCATION "${utf8proc_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${utf8proc_INCLUDE_DIR}")
endif()
