// An event in an instance's history: one state transition, journaled before it is acted on.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "engine/time.hpp"

namespace saga {

using json = nlohmann::json;

enum class EventType {
  instance_started,              // workflow, version, input, deadline, uid, gid
  step_started,                  // step, attempt
  step_succeeded,                // step, attempt, output
  step_failed,                   // step, attempt, error, retry_at (set: a retry is scheduled)
  step_interrupted,              // step, attempt: running when sagad stopped; not counted
  compensation_started,          // step, attempt
  compensation_succeeded,        // step, attempt
  compensation_failed,           // step, attempt, error, retry_at
  compensation_interrupted,      // step, attempt
  instance_compensating,         // cause, reason, uid, gid
  instance_completed,            //
  instance_compensated,          //
  instance_failed,               // step, error
  instance_compensation_failed,  // step, error
  instance_retried,              // step (the --from step, or empty), input (when replaced), uid,
                                 // deadline (a failed instance with a timeout resumes)
};

std::string_view to_string(EventType t);
std::optional<EventType> parse_event_type(std::string_view s);

// Who asked for an operator's action (start, retry, cancel): the peer of the control socket.
struct Caller {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

struct Event {
  uint64_t seq = 0;
  TimePoint at{};
  EventType type = EventType::instance_started;
  std::string step;
  uint32_t attempt = 0;
  json output;  // step_succeeded
  std::string error;
  std::optional<TimePoint> retry_at;
  std::string cause;
  std::string reason;
  json input;  // instance_started, instance_retried (null: unchanged)
  std::string workflow, version;
  std::optional<TimePoint> deadline;
  std::optional<uint32_t> uid;  // the caller's, by SO_PEERCRED, for an operator's action
  std::optional<uint32_t> gid;
};

// The history shape: {"seq", "at", "type", ...} with only the fields the type uses.
// As JSON text, written without building a tree first: what the journal stores.
std::string event_json_text(const Event& e);
json event_to_json(const Event& e);
Event event_from_json(const json& j);  // throws nlohmann::json::exception when malformed
// The same for one event's JSON text, as event_from_json(json::parse(text)) reads it but
// faster: what recovery reads for every event of every instance in flight.
Event event_from_json_text(std::string_view text);  // throws nlohmann::json::exception

}  // namespace saga
