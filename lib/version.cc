// Copyright shmlink authors. SPDX-License-Identifier: MIT
#include <shmlink/version.h>

namespace shmlink {

Version version() noexcept {
  return {SHMLINK_VERSION_MAJOR, SHMLINK_VERSION_MINOR, SHMLINK_VERSION_PATCH};
}

const char* version_string() noexcept { return SHMLINK_VERSION_STRING; }

}  // namespace shmlink
