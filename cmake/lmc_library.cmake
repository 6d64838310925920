# The installable library: one liblmc (shared and static) made of the objects
# of every internal module archive. Only functions marked LMC_API in
# include/lmc.h are exported from the shared library (everything is compiled
# with hidden visibility); the module archives stay for the unit tests that
# call internal functions.
get_property(lmc_modules GLOBAL PROPERTY LMC_MODULE_LIBS)

# External libraries the modules link (json-c, PCRE2, OpenBLAS, CUDA, ...):
# the modules' own link interfaces without the lmc_* modules themselves.
set(lmc_objects "")
set(lmc_external_deps "")
foreach(m ${lmc_modules})
  list(APPEND lmc_objects $<TARGET_OBJECTS:${m}>)
  get_target_property(deps ${m} INTERFACE_LINK_LIBRARIES)
  foreach(d ${deps})
    if(NOT d MATCHES "lmc_")
      list(APPEND lmc_external_deps ${d})
    endif()
  endforeach()
endforeach()
list(REMOVE_DUPLICATES lmc_external_deps)

add_library(lmc_shared SHARED ${lmc_objects})
add_library(lmc_static STATIC ${lmc_objects})
foreach(t lmc_shared lmc_static)
  set_target_properties(${t} PROPERTIES OUTPUT_NAME lmc LINKER_LANGUAGE C)
  target_include_directories(${t} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include> $<INSTALL_INTERFACE:include>)
  target_link_libraries(${t} PRIVATE ${lmc_external_deps})
endforeach()
set_target_properties(lmc_shared PROPERTIES
  VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR})
target_link_options(lmc_shared PRIVATE -Wl,--no-undefined)

# Package files: pkg-config (lmc.pc) and a CMake package (find_package(lmc)).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(LMC_PC_REQUIRES "json-c yajl libpcre2-8 libutf8proc openblas")
if(TARGET PkgConfig::MHD)
  string(APPEND LMC_PC_REQUIRES " libmicrohttpd")
endif()
# Both files locate the prefix relative to themselves, so an installed tree
# may be moved (or installed with cmake --install --prefix).
file(RELATIVE_PATH LMC_PC_TO_PREFIX /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
file(RELATIVE_PATH LMC_CMAKE_TO_PREFIX /p/${CMAKE_INSTALL_LIBDIR}/cmake/lmc /p)
configure_file(${PROJECT_SOURCE_DIR}/cmake/lmc.pc.in ${PROJECT_BINARY_DIR}/lmc.pc @ONLY)
configure_file(${PROJECT_SOURCE_DIR}/cmake/lmcConfig.cmake.in
  ${PROJECT_BINARY_DIR}/lmcConfig.cmake @ONLY)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/lmcConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)

install(TARGETS lmc_shared lmc_static
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/lmc.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_BINARY_DIR}/lmc.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
install(FILES ${PROJECT_BINARY_DIR}/lmcConfig.cmake ${PROJECT_BINARY_DIR}/lmcConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/lmc)
