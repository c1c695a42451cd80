// The state of one workflow instance, rebuilt exactly by replaying its events through apply().
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/definition.hpp"
#include "engine/time.hpp"

namespace saga {

enum class InstanceState {
  running,
  completed,
  compensating,
  compensated,
  failed,
  compensation_failed
};
enum class StepState {
  pending,
  running,
  succeeded,
  failed,
  skipped,
  compensating,
  compensated,
  compensation_failed
};
enum class CompensationState { none, pending, running, compensated, failed };
enum class Phase { run, compensate };

std::string_view to_string(InstanceState s);
std::string_view to_string(StepState s);
std::string_view to_string(CompensationState s);
std::string_view to_string(Phase p);
std::optional<InstanceState> parse_instance_state(std::string_view s);

// Terminal: nothing more will happen. Settled: terminal, or parked waiting for an operator
// (failed, compensation_failed). `start --wait` returns at a settled state.
bool is_terminal(InstanceState s);
bool is_settled(InstanceState s);

// Attempts of one phase of a step.
struct AttemptCounter {
  uint32_t attempts = 0;     // attempts started, ever (attempt numbers keep counting)
  uint32_t budget_base = 0;  // attempts that do not count against max_attempts
  bool running = false;
  std::optional<TimePoint> retry_at;  // waiting for a durable backoff timer
  std::string error;                  // the last attempt's error

  uint32_t counted() const { return attempts - budget_base; }
};

struct StepRun {
  StepState state = StepState::pending;
  AttemptCounter run;
  json output;  // null until succeeded
  std::optional<TimePoint> started_at, ended_at;
  CompensationState compensation = CompensationState::none;
  AttemptCounter comp;
};

struct Instance {
  std::string id;
  std::string workflow;
  std::string version;
  InstanceState state = InstanceState::running;
  std::string cause;  // why it compensated: step_failed, cancelled, timed_out
  json input = json::object();
  TimePoint created_at{}, updated_at{};
  std::optional<TimePoint> deadline;  // the whole instance's timeout
  std::vector<StepRun> steps;
  std::vector<uint32_t> completion_order;  // succeeded steps, in the order they succeeded
  uint64_t seq = 0;                        // seq of the last applied event
};

// The --json shape of DESIGN §7: {"id", "workflow", "version", "state", "cause", ...}.
// As JSON text, written without building a tree first: what every transition journals.
std::string instance_json_text(const Definition& def, const Instance& inst);
// The same without "input" and "steps": what the journal keeps of an instance until it settles,
// while sagad answers for it from memory.
std::string instance_header_json_text(const Instance& inst);
// Whether a record is such a header.
bool is_instance_header(const json& record);
json instance_to_json(const Definition& def, const Instance& inst);

}  // namespace saga
