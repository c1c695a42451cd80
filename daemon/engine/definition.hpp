// A workflow definition as the engine runs it: immutable once loaded, shared by every instance
// pinned to its version.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/time.hpp"

namespace saga {

using json = nlohmann::json;

struct RetryPolicy {
  uint32_t max_attempts = 3;  // 1 = no retry
  Millis initial_interval{1000};
  double backoff = 2.0;
  Millis max_interval{60'000};
  double jitter = 0.0;  // 0..1: the delay varies by up to this fraction
};

// What a step (or its compensation) calls: a step type and its `with:` parameters, which may
// hold ${{ ... }} templates rendered right before each attempt.
struct Invocation {
  std::string uses;
  json with = json::object();
};

struct StepDef {
  std::string name;
  Invocation run;
  std::optional<Invocation> compensate;
  std::vector<uint32_t> depends_on;  // indexes into Definition::steps
  RetryPolicy retry;
  std::optional<Millis> timeout;  // per attempt
  bool continue_on_failure = false;
};

enum class OnFailure { compensate, halt };

// Fires missed while sagad was down: start none, the newest, or all (up to max_catchup).
enum class Catchup { none, latest, all };
// A fire while the schedule's previous instance is still running: skip it, or start anyway.
enum class Overlap { skip, allow };

// One `schedule:` entry. The cron text was validated at load; the scheduler parses it again.
struct ScheduleDef {
  std::string cron;
  std::string timezone = "UTC";
  json input = json::object();
  Catchup catchup = Catchup::latest;
  Overlap overlap = Overlap::skip;
  uint32_t max_catchup = 100;
};

struct Definition {
  std::string name;
  std::string description;
  std::string version;  // hash of the source text
  std::string source;   // the YAML text, journaled for every version an instance uses
  std::string file;     // where it was loaded from (empty when it came from the journal)
  OnFailure on_failure = OnFailure::compensate;
  std::optional<Millis> timeout;  // whole instance
  uint32_t max_parallel = 8;
  std::vector<std::string> required_input;
  std::vector<StepDef> steps;
  std::vector<ScheduleDef> schedules;

  // Index of the step named `name`, or nullopt.
  std::optional<uint32_t> step_index(std::string_view name) const {
    for (uint32_t i = 0; i < steps.size(); ++i) {
      if (steps[i].name == name) return i;
    }
    return std::nullopt;
  }
};

using DefinitionPtr = std::shared_ptr<const Definition>;

}  // namespace saga
