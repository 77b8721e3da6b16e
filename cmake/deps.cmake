# SPDX-License-Identifier: Apache-2.0
# Every dependency is found with pkg-config; a missing one stops the
# configure step with the Debian package that provides it.
find_package(PkgConfig)
if(NOT PKG_CONFIG_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config")
endif()

function(shoal_require name module debpkg)
  pkg_check_modules(${name} IMPORTED_TARGET ${module})
  if(NOT ${name}_FOUND)
    message(FATAL_ERROR "${module} not found: apt-get install ${debpkg}")
  endif()
endfunction()

shoal_require(LIBEVENT libevent libevent-dev)
shoal_require(LIBEVENT_OPENSSL libevent_openssl libevent-dev)
shoal_require(LIBEVENT_PTHREADS libevent_pthreads libevent-dev)
shoal_require(OPENSSL "openssl>=3.0" libssl-dev)
shoal_require(HIREDIS hiredis libhiredis-dev)
shoal_require(RDKAFKA rdkafka librdkafka-dev)
shoal_require(CRITERION criterion libcriterion-dev)
find_package(Threads REQUIRED)
