// The workflow definitions sagad serves: the last good version of each file in the workflows
// directory, every version an instance may still be pinned to, and the load errors.
// Loop thread only.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/definition.hpp"
#include "workflow/loader.hpp"

namespace saga {

struct LoadError {
  std::string file;
  std::string error;
};

class WorkflowRegistry {
 public:
  explicit WorkflowRegistry(StepSchemaLookup lookup) : lookup_(std::move(lookup)) {}

  // Rescans `dir` (*.yaml, *.yml). A file that fails validation keeps its last good version
  // serving; a deleted file's workflow stops being startable. Returns the definitions that are
  // new since the last scan (versions never seen before), for journaling.
  std::vector<DefinitionPtr> reload(const std::string& dir);

  // The current version of a workflow, or null.
  DefinitionPtr find(const std::string& name) const;
  // Any version seen by this process (current or pinned by an instance), or null.
  DefinitionPtr find_version(const std::string& version) const;
  // Registers a version loaded from the journal (an instance pinned to an older file content).
  DefinitionPtr adopt(const std::string& source, const std::string& version);

  std::vector<DefinitionPtr> current() const;
  const std::vector<LoadError>& errors() const { return errors_; }

 private:
  struct FileEntry {
    DefinitionPtr good;
  };
  StepSchemaLookup lookup_;
  std::map<std::string, FileEntry> files_;           // path -> last good
  std::map<std::string, DefinitionPtr> by_name_;     // current
  std::map<std::string, DefinitionPtr> by_version_;  // every version seen
  std::vector<LoadError> errors_;
};

}  // namespace saga
