// The engine core: the rules of DESIGN §4 as a pure state machine.
//
// Every operation takes a definition, an instance and what happened, appends the events that
// follow to the returned Transition, applies each of them to the instance through apply() (so
// that replaying the journal rebuilds the same state), and says which actions the caller must
// take once those events are durable. No I/O, no clock, no threads: `now` is passed in.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/definition.hpp"
#include "engine/error.hpp"
#include "engine/event.hpp"
#include "engine/instance.hpp"

namespace saga {

struct Action {
  enum class Kind {
    run_attempt,    // run `phase` of `step`, attempt number `attempt`
    arm_timer,      // call on_timer(step, phase) at `at` (a durable backoff)
    arm_deadline,   // call on_deadline() at `at` (the instance's timeout)
    stop_attempts,  // tell the instance's running attempts to stop (cancel, timeout)
  };
  Kind kind = Kind::run_attempt;
  uint32_t step = 0;
  Phase phase = Phase::run;
  uint32_t attempt = 0;
  TimePoint at{};
};

struct Transition {
  std::vector<Event> events;
  std::vector<Action> actions;
};

enum class Outcome { ok, retry, fail };

// What a failed attempt's error says when its step type gave no text.
inline constexpr std::string_view kNoErrorMessage = "the step type failed without a message";

struct AttemptResult {
  uint32_t step = 0;
  Phase phase = Phase::run;
  uint32_t attempt = 0;
  Outcome outcome = Outcome::ok;
  json output;        // ok
  std::string error;  // retry, fail; when empty, the step's error says it had no message
};

// Applies one event to the instance. The only function that changes an Instance.
void apply(const Definition& def, Instance& inst, const Event& e);

// Starts an instance: `inst` must be default-constructed. `input` must already be validated.
Transition start(const Definition& def, Instance& inst, std::string id, json input,
                 std::optional<Caller> caller, TimePoint now);

// Whether a transition may start attempts. A daemon that is shutting down records what it
// learns but starts nothing it will not run: recover() starts those after the restart, as first
// attempts rather than interrupted ones.
enum class Starts { attempts, none };

// The result of an attempt. A result for an attempt that is no longer current (abandoned,
// superseded) changes nothing.
Transition on_attempt_result(const Definition& def, Instance& inst, const AttemptResult& result,
                             TimePoint now, Starts starts = Starts::attempts);

// A durable backoff timer armed by arm_timer fired. Stale timers change nothing.
Transition on_timer(const Definition& def, Instance& inst, uint32_t step, Phase phase,
                    TimePoint now, Starts starts = Starts::attempts);

// The instance's deadline passed: behaves like cancel with cause `timed_out`.
Transition on_deadline(const Definition& def, Instance& inst, TimePoint now,
                       Starts starts = Starts::attempts);

// An operator's cancel: allowed in `running` and `failed`.
Result<Transition> cancel(const Definition& def, Instance& inst, std::string reason,
                          std::optional<Caller> caller, TimePoint now);

// An operator's retry: `failed` resumes at the failed steps (or re-runs `from` and everything
// downstream of it), `compensation_failed` resumes the remaining compensations. A non-null
// `input` replaces the instance input (only with a `failed` instance).
Result<Transition> retry(const Definition& def, Instance& inst, std::optional<std::string> from,
                         json input, std::optional<Caller> caller, TimePoint now);

// After the instance was rebuilt from the journal: attempts that were running are run again
// (interrupted, not counted), backoff timers and the deadline are armed again.
Transition recover(const Definition& def, Instance& inst, TimePoint now);

// Rebuilds an instance from its full history.
Instance replay(const Definition& def, std::string id, const std::vector<Event>& history);

// Every step that depends on `step`, directly or through others, and `step` itself.
std::vector<uint32_t> downstream_of(const Definition& def, uint32_t step);

// The delay before attempt `attempt` + 1 after `attempt` failed (1-based), with deterministic
// jitter derived from `seed`.
Millis retry_delay(const RetryPolicy& policy, uint32_t attempt, uint64_t seed);

}  // namespace saga
