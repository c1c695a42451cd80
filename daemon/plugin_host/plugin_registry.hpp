// The plugin host: loads step plugins with Boost.DLL, checks their ABI, and keeps the step types
// they provide in a registry keyed by name.
//
// Each library is loaded from a private, sealed copy of its file (a memfd), never from the file
// itself: a plugin file overwritten in place (cp over it) then changes nothing that runs. Every
// message and PluginInfo names the file.
//
// Loaded libraries are never unloaded: the registry owns every library and outlives every
// attempt. Loading happens on the loop thread, also while attempts run (SIGHUP adds new files):
// each StepTypeInfo is its own allocation that never moves and is never removed, so the one an
// attempt holds stays valid. invoke() is called from worker threads and reads only that.
#pragma once

#include <saga/plugin_abi.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
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
  bool has_defaults = false;              // some parameter declares a default
  const saga_step_type* entry = nullptr;  // points into the loaded library
};

// Gives each parameter of `type` that `params` (a step's rendered `with:`, an object or null)
// lacks or holds as null its declared default, so that a step runs with the defaults `sagactl
// plugins` shows. Parameters without a default, and params of any other kind, are left alone.
void fill_param_defaults(const StepTypeInfo& type, nlohmann::json& params);

struct PluginInfo {
  std::string file;
  std::string name;
  std::string version;
  uint32_t abi_major = 0;
  uint32_t abi_minor = 0;
  std::vector<std::string> step_types;
};

// Why the latest attempt to load a plugin file (or to read a plugin directory) failed.
struct PluginLoadError {
  std::string file;
  std::string error;  // the whole message, naming the file
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

  // Loads every *.so in `dir` (sorted by name) not loaded yet; returns one error per file
  // refused. A missing directory is one error. A file refused after its code was loaded is not
  // loaded again (its copy stays mapped) until it changes; its error is returned again.
  std::vector<Error> load_directory(const std::string& dir);

  // A check of the files about to be loaded for the first time (or again, after they changed):
  // the reason to refuse each file that must not be loaded, by path. sagad loads them in a child
  // process first (see trial_main), as a library whose initialization crashes, throws or hangs
  // would take the process that loads it down with it, or leave its dynamic loader locked.
  struct TrialRefusal {
    std::string why;
    // The file is to blame, and is not tried again until it changes; else (it was killed from
    // outside, the trial ran out of time) it is tried again at the next load.
    bool sticky = true;
  };
  using Trial =
      std::function<std::map<std::string, TrialRefusal>(const std::vector<std::string>& paths)>;
  void set_trial(Trial trial) { trial_ = std::move(trial); }

  // The child's side of a trial: loads each file into this process, in order, writing "ready"
  // first and then a line "ok" to kTrialReportFd after each one that loaded or was refused as
  // any load would refuse it, and exits 0 after the last. When one's initialization throws, it
  // writes "threw " and the exception's text and exits with kTrialThrew; a crash ends the
  // process by its signal.
  static constexpr int kTrialReportFd = 3;
  static constexpr int kTrialThrew = 3;
  [[noreturn]] static void trial_main(const std::vector<std::string>& paths);

  // The error of the latest load of each file that is not loaded, by file name: a file that
  // loads drops its error, and so does one gone from its directory at the next load_directory.
  std::vector<PluginLoadError> errors() const;

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
  // What identifies one content of a file without reading it: changed by any write or rename.
  struct FileStamp {
    uint64_t device = 0;
    uint64_t inode = 0;
    int64_t size = 0;
    int64_t modified_ns = 0;
    int64_t changed_ns = 0;
    bool operator==(const FileStamp&) const = default;
  };
  // A refused file: why, and whether its code stayed loaded (see load_directory).
  struct Refused {
    std::string dir;  // the directory it was found in; empty for load_file
    Error error;
    // Set when it is not tried again until it changes: its code stayed loaded, or the trial
    // blamed it.
    std::optional<FileStamp> loaded_as;
  };
  // Why a file's code could not be loaded, and whether some of it stayed loaded all the same.
  struct LoadFailure {
    Error error;
    std::optional<FileStamp> loaded_as;  // set when its code stayed loaded
    std::string threw;                   // what its initialization threw, if it did
  };
  static FileStamp stamp_of(const struct stat& st);
  // Loads files not loaded yet, after the trial when one is set: one error per file refused.
  std::vector<Error> load_new(const std::vector<std::string>& paths, const std::string& dir);
  Result<void> load_and_record(const std::string& path, const std::string& dir);
  // Records a file the trial refused, without loading it.
  Result<void> refuse_untried(const std::string& path, const std::string& dir,
                              const TrialRefusal& refusal);
  // Copies the file privately and loads the copy; the library is held from then on.
  std::expected<const Library*, LoadFailure> load_library(const std::string& path);
  // Reads the plugin descriptor of a loaded library and registers its step types.
  Result<void> add_plugin(const std::string& path, const Library& library);

  std::vector<std::unique_ptr<Library>> libraries_;
  std::map<std::string, Refused> refused_;  // by file
  Trial trial_;
  std::vector<PluginInfo> plugins_;
  std::vector<std::unique_ptr<StepTypeInfo>> types_;
};

}  // namespace saga
