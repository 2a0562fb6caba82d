# Debian packages by CPack (`cpack -G DEB` in the build directory, after a full build):
#   gatewayd          the daemon, gatewayctl (+ man page and bash completion), the systemd unit,
#                     the default config and the device profiles under /etc/gatewayd (conffiles:
#                     an operator's edits survive upgrades), maintainer scripts that create the
#                     gatewayd user (in dialout) and /var/lib/gatewayd.
#   gatewayd-central  central_consumer and central_subscriber, for central servers.
# Install rules of the binaries live beside their targets; the files of deploy/ are installed
# here. Components: everything without one is "gateway" (CMAKE_INSTALL_DEFAULT_COMPONENT_NAME,
# set before the subdirectories in the top CMakeLists).
#
# The version is the project's; a test (tests/integration/test_deb_package.py) builds a
# higher-versioned package from the same tree with `cpack -D CPACK_PACKAGE_VERSION=...`.

include(GNUInstallDirs)

# Absolute destinations: Debian puts units in /lib/systemd/system (bookworm) and conffiles in
# /etc, whatever the install prefix.
install(FILES ${CMAKE_SOURCE_DIR}/deploy/gatewayd.service
        DESTINATION /lib/systemd/system COMPONENT gateway)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/gatewayd.yaml
        DESTINATION /etc/gatewayd COMPONENT gateway)
file(GLOB GW_PROFILES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/deploy/profiles/*.yaml)
install(FILES ${GW_PROFILES} DESTINATION /etc/gatewayd/profiles COMPONENT gateway)
install(FILES ${CMAKE_SOURCE_DIR}/deploy/profiles/README.md
        DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/gatewayd/profiles COMPONENT gateway)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DATADIR}/doc/gatewayd COMPONENT gateway)

# conffiles: every file the package puts under /etc.
set(GW_CONFFILES "/etc/gatewayd/gatewayd.yaml\n")
foreach(p IN LISTS GW_PROFILES)
  get_filename_component(name ${p} NAME)
  string(APPEND GW_CONFFILES "/etc/gatewayd/profiles/${name}\n")
endforeach()
file(WRITE ${CMAKE_BINARY_DIR}/debian/gateway/conffiles "${GW_CONFFILES}")
foreach(script postinst prerm postrm)
  file(COPY ${CMAKE_SOURCE_DIR}/deploy/debian/${script}
       DESTINATION ${CMAKE_BINARY_DIR}/debian/gateway
       FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
                        WORLD_READ WORLD_EXECUTE)
endforeach()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME gatewayd)
set(CPACK_PACKAGE_VENDOR "Campus Edge Gateway")
set(CPACK_PACKAGE_CONTACT "Campus Edge Gateway maintainers <gateway@campus.invalid>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "Campus edge gateway: building devices to MQTT with a durable buffer")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL gateway central)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)  # Depends: from the binaries' shared libraries
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_GATEWAY_PACKAGE_NAME gatewayd)
set(CPACK_DEBIAN_GATEWAY_PACKAGE_DEPENDS "adduser")
string(CONCAT CPACK_COMPONENT_GATEWAY_DESCRIPTION
    "Campus edge gateway daemon and ops CLI\n"
    "gatewayd reads a building's meters, card readers, gates and cameras, commits every event to\n"
    "a local SQLite buffer and forwards it as protobuf over MQTT. gatewayctl inspects and\n"
    "controls it. Includes the systemd unit (Type=notify, watchdog, hardened).")
set(CPACK_DEBIAN_GATEWAY_PACKAGE_CONTROL_EXTRA
    ${CMAKE_BINARY_DIR}/debian/gateway/conffiles
    ${CMAKE_BINARY_DIR}/debian/gateway/postinst
    ${CMAKE_BINARY_DIR}/debian/gateway/prerm
    ${CMAKE_BINARY_DIR}/debian/gateway/postrm)

set(CPACK_DEBIAN_CENTRAL_PACKAGE_NAME gatewayd-central)
string(CONCAT CPACK_COMPONENT_CENTRAL_DESCRIPTION
    "Central-side consumer for campus edge gateways\n"
    "central_consumer stores the gateways' events in SQLite or PostgreSQL, deduplicated on\n"
    "(gateway_id, seq), with MQTT shared subscriptions so several servers share the stream.")

include(CPack)
