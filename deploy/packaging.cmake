# Installation layout and the Debian packages (CPack DEB generator).
#
#   deploy/build-packages.sh build-pkg
#
# configures a tree with Debian's hardening flags (dpkg-buildflags), builds the programs and
# runs `cpack -G DEB`, which gives apm-agent_VERSION-1_ARCH.deb, apm-collector_... and
# apm-cli_... in build-pkg/.
# Each install() rule names the component (= package) it belongs to. Paths are the Debian
# ones: programs in /usr/bin, configs in /etc/apm, units in /lib/systemd/system (bookworm's
# place for packaged units), the probe where Debian's python3 finds it. docs/install.md
# describes the result for operators.

set(APM_PY_SRC ${CMAKE_SOURCE_DIR}/agent/python)
set(APM_DEB ${CMAKE_SOURCE_DIR}/deploy/debian)

# --- apm-agent ------------------------------------------------------------------------
install(TARGETS apm-agent RUNTIME DESTINATION bin COMPONENT agent)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/etc/agent.conf DESTINATION /etc/apm COMPONENT agent)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/systemd/apm-agent.service
        DESTINATION /lib/systemd/system COMPONENT agent)

# The probe package goes to dist-packages so `import apm_probe` works with Debian's python3.
# Byte code is compiled by the postinst (py3compile) and removed by the prerm (py3clean),
# as Debian's Python packages do, so nothing compiled here ends up in the package.
install(DIRECTORY ${APM_PY_SRC}/apm_probe DESTINATION lib/python3/dist-packages COMPONENT agent
        FILE_PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
        PATTERN "__pycache__" EXCLUDE PATTERN "*.pyc" EXCLUDE)

# The sampling extension, compiled for Debian's python3 (agent/python/CMakeLists.txt), goes
# into the same package directory; where it does not load, the probe uses tracemalloc.
if(TARGET apm_sampler)
  install(TARGETS apm_sampler LIBRARY DESTINATION lib/python3/dist-packages/apm_probe
          COMPONENT agent PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
endif()

# The probe's pip wheel (agent/python/CMakeLists.txt), for virtualenvs and containers:
# `pip install --no-index /usr/share/apm/wheels/apm_probe-*.whl` (docs/install.md).
if(TARGET apm_wheel)
  install(DIRECTORY ${CMAKE_BINARY_DIR}/python-wheels/ DESTINATION share/apm/wheels
          COMPONENT agent FILES_MATCHING PATTERN "*.whl")
endif()

# apm-run finds the probe next to its own real path (DIR/apm_probe/_boot) and puts DIR on
# the PYTHONPATH of the program it starts. It therefore lives in /usr/lib/apm beside a
# link to the package: that directory holds nothing else importable, so a probed program
# (in a virtualenv, say) sees only apm_probe added, never all of dist-packages.
# /usr/bin/apm-run is a link to it. The shebang names Debian's python3, as dh_python3
# would, so a python3 earlier on PATH cannot change which interpreter runs the launcher.
file(READ ${APM_PY_SRC}/apm-run APM_RUN_TEXT)
string(REGEX REPLACE "^#![^\n]*\n" "#!/usr/bin/python3\n" APM_RUN_TEXT "${APM_RUN_TEXT}")
set(APM_STAGE ${CMAKE_BINARY_DIR}/deploy-stage)
file(MAKE_DIRECTORY ${APM_STAGE}/lib-apm ${APM_STAGE}/bin)
file(WRITE ${APM_STAGE}/apm-run.tmp "${APM_RUN_TEXT}")
configure_file(${APM_STAGE}/apm-run.tmp ${APM_STAGE}/lib-apm/apm-run COPYONLY)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${APM_PY_SRC}/apm-run)
file(CREATE_LINK ../python3/dist-packages/apm_probe ${APM_STAGE}/lib-apm/apm_probe SYMBOLIC)
file(CREATE_LINK ../lib/apm/apm-run ${APM_STAGE}/bin/apm-run SYMBOLIC)
install(PROGRAMS ${APM_STAGE}/lib-apm/apm-run DESTINATION lib/apm COMPONENT agent)
install(FILES ${APM_STAGE}/lib-apm/apm_probe DESTINATION lib/apm COMPONENT agent)
install(FILES ${APM_STAGE}/bin/apm-run DESTINATION bin COMPONENT agent)

# --- apm-collector --------------------------------------------------------------------
install(TARGETS apm-collector RUNTIME DESTINATION bin COMPONENT collector)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/etc/collector.conf DESTINATION /etc/apm
        COMPONENT collector)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/systemd/apm-collector.service
        DESTINATION /lib/systemd/system COMPONENT collector)
# The web page's static files, once the collector has them.
if(IS_DIRECTORY ${CMAKE_SOURCE_DIR}/server/web)
  install(DIRECTORY ${CMAKE_SOURCE_DIR}/server/web/ DESTINATION share/apm/web
          COMPONENT collector)
endif()

# The operator's guide, which the units name as their documentation.
foreach(comp agent collector)
  install(FILES ${CMAKE_SOURCE_DIR}/docs/install.md DESTINATION share/doc/apm-${comp}
          COMPONENT ${comp})
endforeach()

# --- apm-cli --------------------------------------------------------------------------
install(TARGETS apm-cli RUNTIME DESTINATION bin COMPONENT cli)
install(FILES ${CMAKE_BINARY_DIR}/man/apm-cli.bash DESTINATION share/bash-completion/completions
        RENAME apm-cli COMPONENT cli)

# --- every package: man pages, copyright, changelog -------------------------------------
# Man pages come from deploy/man (target apm_man), gzipped as Debian does. Each package
# carries the machine-readable copyright file and its changelog.Debian.gz in
# /usr/share/doc/PACKAGE, as Debian policy asks (12.5, 12.7).
install(FILES ${CMAKE_BINARY_DIR}/man/apm-agent.8.gz DESTINATION share/man/man8 COMPONENT agent)
install(FILES ${CMAKE_BINARY_DIR}/man/apm-agent.conf.5.gz DESTINATION share/man/man5
        COMPONENT agent)
install(FILES ${CMAKE_BINARY_DIR}/man/apm-collector.8.gz DESTINATION share/man/man8
        COMPONENT collector)
install(FILES ${CMAKE_BINARY_DIR}/man/apm-collector.conf.5.gz DESTINATION share/man/man5
        COMPONENT collector)
install(FILES ${CMAKE_BINARY_DIR}/man/apm-cli.1.gz DESTINATION share/man/man1 COMPONENT cli)

# The changelog's top entry must be the version the packages get.
file(STRINGS ${APM_DEB}/doc/changelog APM_CHANGELOG_TOP LIMIT_COUNT 1)
set(APM_DEB_VERSION ${PROJECT_VERSION}-1)
if(NOT APM_CHANGELOG_TOP MATCHES "^apm \\(${APM_DEB_VERSION}\\) ")
  message(FATAL_ERROR "deploy/debian/doc/changelog starts with '${APM_CHANGELOG_TOP}'; the "
                      "packages are ${APM_DEB_VERSION}: add an entry for it")
endif()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${APM_DEB}/doc/changelog)
execute_process(COMMAND gzip -9nc INPUT_FILE ${APM_DEB}/doc/changelog
                OUTPUT_FILE ${APM_STAGE}/changelog.Debian.gz COMMAND_ERROR_IS_FATAL ANY)
foreach(comp agent collector cli)
  install(FILES ${APM_DEB}/doc/copyright ${APM_STAGE}/changelog.Debian.gz
          DESTINATION share/doc/apm-${comp} COMPONENT ${comp})
endforeach()

# --- CPack ----------------------------------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME apm)
set(CPACK_PACKAGE_VENDOR "apm")
set(CPACK_PACKAGE_CONTACT "apm maintainers <apm@example.org>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_COMPONENTS_ALL agent collector cli)
set(CPACK_DEB_COMPONENT_INSTALL ON)

set(CPACK_DEBIAN_PACKAGE_RELEASE 1) # the -1 of APM_DEB_VERSION
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
# Runtime libraries (libuv1, liblmdb0, libcurl4, ...) come from dpkg-shlibdeps, so the
# Depends line names exactly what the binaries link, with Debian's minimum versions.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME apm-agent)
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "adduser, python3 (>= 3.8)")
set(CPACK_DEBIAN_AGENT_PACKAGE_SECTION admin)
set(CPACK_COMPONENT_AGENT_DESCRIPTION
    "memory-leak monitoring for Python services: host agent and Python probe
apm-agent samples the memory of every process on the host (RSS, PSS/USS,
swap, cgroup usage and limit) and streams it to apm-collector. The package
also holds apm_probe, the in-process Python probe, and apm-run, which starts
any Python program with the probe inside.")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
    ${APM_DEB}/apm-agent/conffiles ${APM_DEB}/apm-agent/postinst
    ${APM_DEB}/apm-agent/prerm ${APM_DEB}/apm-agent/postrm)

set(CPACK_DEBIAN_COLLECTOR_PACKAGE_NAME apm-collector)
set(CPACK_DEBIAN_COLLECTOR_PACKAGE_DEPENDS "adduser, openssl")
set(CPACK_DEBIAN_COLLECTOR_PACKAGE_SECTION admin)
set(CPACK_COMPONENT_COLLECTOR_DESCRIPTION
    "memory-leak monitoring for Python services: collector
apm-collector receives samples from apm-agent over TCP, stores them as
compressed time series in LMDB, tells leaks from bloat, sawtooth and
warm-up, and answers an HTTP API.")
set(CPACK_DEBIAN_COLLECTOR_PACKAGE_CONTROL_EXTRA
    ${APM_DEB}/apm-collector/conffiles ${APM_DEB}/apm-collector/postinst
    ${APM_DEB}/apm-collector/prerm ${APM_DEB}/apm-collector/postrm)

set(CPACK_DEBIAN_CLI_PACKAGE_NAME apm-cli)
set(CPACK_DEBIAN_CLI_PACKAGE_SECTION utils)
set(CPACK_COMPONENT_CLI_DESCRIPTION
    "memory-leak monitoring for Python services: command-line client
apm-cli queries apm-collector's HTTP API (hosts, series, forecasts,
alerts) and analyses recorded memory traces offline.")

include(CPack)
