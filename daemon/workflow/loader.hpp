// Loading and validating workflow definitions (DESIGN §3).
//
// Every validation error reads `FILE:LINE:COLUMN: sentence` with 1-based line and column.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/definition.hpp"
#include "engine/error.hpp"

namespace saga {

// What the loader needs to know of a step type to validate `uses:` and `with:`.
struct StepSchema {
  struct Param {
    std::string name;
    std::string type;  // any, string, integer, number, boolean, array, object
    bool required = false;
  };
  std::vector<Param> params;
  bool accepts_any_params = false;
  bool can_compensate = false;
};

// Looks up a step type by name; nullopt: unknown. When the loader is given no lookup, `uses`
// and `with` are checked for shape only.
using StepSchemaLookup = std::function<std::optional<StepSchema>(const std::string& uses)>;

// Parses and validates one workflow. `file` is used in messages and stored in the definition.
// The version is a hash of `source`. Returns every problem found, each a full message.
// `journaled`: a version read back from the journal, which an earlier sagad accepted. It skips
// the limits on new files (UTF-8, 1,000 steps, 16 MiB of `with:` text, durations of at most
// 36500d), so that an instance pinned to it still resumes after an upgrade.
Result<Definition> load_workflow(const std::string& source, const std::string& file,
                                 const StepSchemaLookup& lookup, bool journaled = false);

// Reads the file, then load_workflow(). A file that cannot be read is one error.
Result<Definition> load_workflow_file(const std::string& path, const StepSchemaLookup& lookup);

// nullopt when `value` fits a parameter of `type` ("string", "integer", ... "any"); else what it
// must be ("an integer"). A string holding a template fits any type: it is checked once rendered,
// with `rendered`, where null (which step types read as "not given") fits too, and a whole number
// written 10.0 fits "integer".
std::optional<std::string> param_type_mismatch(const std::string& type, const json& value,
                                               bool rendered = false);

// The content hash used as a definition's version: 16 lowercase hex digits.
std::string definition_version(const std::string& source);

}  // namespace saga
