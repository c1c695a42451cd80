// sagad's wiring: one libuv loop thread owns every instance, the socket, the watcher and the
// timers; attempts run on the executor's workers and journal commits on the writer thread, and
// both hand their results back to the loop.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/error.hpp"
#include "engine/time.hpp"
#include "journal/journal.hpp"

namespace saga {

struct Config {
  std::string workflows_dir = "/etc/saga/workflows";
  std::vector<std::string> plugin_dirs;
  std::string state_dir = "/var/lib/saga";
  std::string socket_path = "/run/saga/sagad.sock";
  uint32_t workers = 16;
  Durability durability = Durability::sync;
  Millis retention{30LL * 24 * 3600 * 1000};
  std::string secrets_dir;    // empty: $CREDENTIALS_DIRECTORY when set
  Millis grace{10'000};       // how long draining waits for running attempts
  uint64_t min_free_mb = 64;  // the journal stops taking commits below this much free space
};

// Runs the daemon until SIGTERM/SIGINT; returns the process exit code.
int run_daemon(const Config& config);

}  // namespace saga
