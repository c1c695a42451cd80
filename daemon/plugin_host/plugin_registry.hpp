// The plugin host: loads step plugins with Boost.DLL, checks their ABI, and keeps the step types
// they provide in a registry keyed by name.
//
// Loaded libraries are never unloaded: the registry owns every library and outlives every
// attempt. Loading happens on the loop thread, also while attempts run (SIGHUP adds new files):
// each StepTypeInfo is its own allocation that never moves and is never removed, so the one an
// attempt holds stays valid. invoke() is called from worker threads and reads only that.
#pragma once

#include <saga/plugin_abi.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "engine/error.hpp"

namespace saga {

struct ParamSpec {
  std::string name;
  saga_param_type type = SAGA_PARAM_ANY;
  bool required = false;
  nlohmann::json default_value;  // null: none
  std::string description;
};

struct StepTypeInfo {
  std::string name;
  std::string description;
  std::string file;  // the plugin library that provides it
  std::vector<ParamSpec> params;
  bool accepts_any_params = false;
  bool can_compensate = false;
  bool runs_inline = false;               // SAGA_STEP_INLINE: may run on the loop thread
  const saga_step_type* entry = nullptr;  // points into the loaded library
};

struct PluginInfo {
  std::string file;
  std::string name;
  std::string version;
  uint32_t abi_major = 0;
  uint32_t abi_minor = 0;
  std::vector<std::string> step_types;
};

// One attempt as the host hands it to a plugin.
struct AttemptRequest {
  std::string instance_id;
  std::string workflow;
  std::string step;
  std::string idempotency_key;
  uint32_t attempt = 1;
  saga_phase phase = SAGA_PHASE_RUN;
  int64_t deadline_unix_ms = 0;
  std::string params_json;
  std::string input_json;
  std::string steps_json;
};

struct AttemptReply {
  saga_outcome outcome = SAGA_OUTCOME_RETRY;
  std::string data;  // output JSON for ok, the error otherwise
};

// Where a plugin's log lines go: level (saga_log_level) and message.
using PluginLogFn = std::function<void(uint32_t level, std::string_view message)>;

class PluginRegistry {
 public:
  PluginRegistry();
  ~PluginRegistry();
  PluginRegistry(const PluginRegistry&) = delete;
  PluginRegistry& operator=(const PluginRegistry&) = delete;

  // Loads one plugin library. Refuses, naming the file: a file that is not a saga plugin, an
  // ABI major other than SAGA_ABI_MAJOR (naming both versions), a step type name that another
  // loaded plugin already provides (naming both files). A refused plugin adds nothing.
  Result<void> load_file(const std::string& path);

  // Loads every *.so in `dir` (sorted by name); returns one error per file refused. A missing
  // directory is one error.
  std::vector<Error> load_directory(const std::string& dir);

  const StepTypeInfo* find(std::string_view step_type) const;
  const std::vector<PluginInfo>& plugins() const { return plugins_; }
  std::vector<const StepTypeInfo*> step_types() const;

  // Runs one attempt on the calling thread and returns its result. `cancelled` is what the
  // plugin sees through Context::cancelled(). A plugin that sets no result is a transient
  // failure. Thread-safe.
  static AttemptReply invoke(const StepTypeInfo& type, const AttemptRequest& request,
                             const std::atomic<bool>& cancelled, const PluginLogFn& log);

 private:
  struct Library;
  std::vector<std::unique_ptr<Library>> libraries_;
  std::vector<PluginInfo> plugins_;
  std::vector<std::unique_ptr<StepTypeInfo>> types_;
};

}  // namespace saga
