// The workflow definitions sagad serves: the last good version of each file in the workflows
// directory, every version an instance may still be pinned to, and the load errors.
// Loop thread only.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "engine/definition.hpp"
#include "workflow/loader.hpp"

namespace saga {

struct LoadError {
  std::string file;
  std::string error;
};

// The workflow files of a directory, as sagad loads them: its *.yaml and *.yml regular files not
// hidden (no leading dot), in order. A directory, a FIFO or a dangling link is skipped; a name
// that cannot be looked at (a loop of links) is `unreadable`. `error` is set when the directory
// itself cannot be read.
struct WorkflowFiles {
  std::vector<std::string> paths;
  std::vector<LoadError> unreadable;
  std::error_code error;
};
WorkflowFiles workflow_files(const std::string& dir);

class WorkflowRegistry {
 public:
  // The version (and its source) a workflow file last loaded as, from before this process.
  struct Kept {
    std::string version;
    std::string source;
  };
  using LastGood = std::function<std::optional<Kept>(const std::string& path)>;

  // `last_good` gives a file that fails at its first load here the version to keep serving.
  explicit WorkflowRegistry(StepSchemaLookup lookup, LastGood last_good = nullptr)
      : lookup_(std::move(lookup)), last_good_(std::move(last_good)) {}

  // Rescans `dir` (*.yaml, *.yml). A file that fails validation keeps its last good version
  // serving (after a restart, the one `last_good` gives); a deleted file's workflow stops being
  // startable. Returns the definitions that are
  // new since the last scan (versions never seen before), for journaling.
  std::vector<DefinitionPtr> reload(const std::string& dir);

  // The current version of a workflow, or null.
  DefinitionPtr find(const std::string& name) const;
  // Any version seen by this process (current or pinned by an instance), or null.
  DefinitionPtr find_version(const std::string& version) const;
  // Registers a version loaded from the journal (an instance pinned to an older file content);
  // null, with adopt_error() saying why, when it does not load.
  DefinitionPtr adopt(const std::string& source, const std::string& version);
  const std::string& adopt_error() const { return adopt_error_; }

  std::vector<DefinitionPtr> current() const;
  // Every workflow file that serves its workflow, and the version it serves.
  std::map<std::string, std::string> file_versions() const;
  // Whether the last reload could read the directory (if not, it kept everything as it was).
  bool scanned() const { return scanned_; }
  // Whether workflow `name`, which is not current, may be defined by a file that failed to load
  // with no good version to serve (as after a restart): one that names it, or one whose name
  // cannot be read.
  bool may_define(std::string_view name) const;
  const std::vector<LoadError>& errors() const { return errors_; }

 private:
  DefinitionPtr restore(const std::string& path);

  struct FileEntry {
    DefinitionPtr good;
  };
  StepSchemaLookup lookup_;
  LastGood last_good_;
  std::map<std::string, FileEntry> files_;           // path -> last good
  std::map<std::string, DefinitionPtr> by_name_;     // current
  std::map<std::string, std::string> name_file_;     // current: name -> the file serving it
  std::map<std::string, DefinitionPtr> by_version_;  // every version seen
  std::vector<LoadError> errors_;
  bool scanned_ = false;
  std::string adopt_error_;
  // The names of the files that failed with no good version; nullopt where none can be read.
  std::vector<std::optional<std::string>> unloaded_;
};

}  // namespace saga
