#include "engine/event.hpp"

#include "engine/json_text.hpp"

#include <array>
#include <utility>

namespace saga {
namespace {

constexpr std::array<std::pair<EventType, std::string_view>, 15> kEventNames{{
    {EventType::instance_started, "instance_started"},
    {EventType::step_started, "step_started"},
    {EventType::step_succeeded, "step_succeeded"},
    {EventType::step_failed, "step_failed"},
    {EventType::step_interrupted, "step_interrupted"},
    {EventType::compensation_started, "compensation_started"},
    {EventType::compensation_succeeded, "compensation_succeeded"},
    {EventType::compensation_failed, "compensation_failed"},
    {EventType::compensation_interrupted, "compensation_interrupted"},
    {EventType::instance_compensating, "instance_compensating"},
    {EventType::instance_completed, "instance_completed"},
    {EventType::instance_compensated, "instance_compensated"},
    {EventType::instance_failed, "instance_failed"},
    {EventType::instance_compensation_failed, "instance_compensation_failed"},
    {EventType::instance_retried, "instance_retried"},
}};

}  // namespace

std::string_view to_string(EventType t) {
  for (const auto& [type, name] : kEventNames) {
    if (type == t) return name;
  }
  return "unknown";
}

std::optional<EventType> parse_event_type(std::string_view s) {
  for (const auto& [type, name] : kEventNames) {
    if (name == s) return type;
  }
  return std::nullopt;
}

json event_to_json(const Event& e) {
  return json::parse(event_json_text(e));
}

std::string event_json_text(const Event& e) {
  std::string out;
  out.reserve(128);
  JsonText w(out);
  w.begin_object();
  w.key("seq").number(e.seq);
  w.key("at").plain(format_rfc3339(e.at));
  w.key("type").plain(to_string(e.type));
  if (!e.step.empty()) w.key("step").string(e.step);
  if (e.attempt != 0) w.key("attempt").number(e.attempt);
  if (e.type == EventType::step_succeeded) w.key("output").value(e.output);
  if (!e.error.empty()) w.key("error").string(e.error);
  if (e.retry_at) w.key("retry_at").plain(format_rfc3339(*e.retry_at));
  if (!e.cause.empty()) w.key("cause").string(e.cause);
  if (!e.reason.empty()) w.key("reason").string(e.reason);
  if (!e.input.is_null()) w.key("input").value(e.input);
  if (!e.workflow.empty()) w.key("workflow").string(e.workflow);
  if (!e.version.empty()) w.key("version").string(e.version);
  if (e.deadline) w.key("deadline").plain(format_rfc3339(*e.deadline));
  if (e.uid) w.key("uid").number(*e.uid);
  w.end_object();
  return out;
}

namespace {

std::optional<TimePoint> time_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return std::nullopt;
  auto t = parse_rfc3339(it->get<std::string>());
  if (!t) throw json::other_error::create(501, std::string("bad time in ") + key, &j);
  return t;
}

}  // namespace

Event event_from_json(const json& j) {
  Event e;
  e.seq = j.at("seq").get<uint64_t>();
  auto at = time_field(j, "at");
  if (!at) throw json::out_of_range::create(403, "key 'at' not found", &j);
  e.at = *at;
  auto type = parse_event_type(j.at("type").get<std::string>());
  if (!type) throw json::other_error::create(501, "unknown event type", &j);
  e.type = *type;
  e.step = j.value("step", std::string());
  e.attempt = j.value("attempt", 0u);
  if (auto it = j.find("output"); it != j.end()) e.output = *it;
  e.error = j.value("error", std::string());
  e.retry_at = time_field(j, "retry_at");
  e.cause = j.value("cause", std::string());
  e.reason = j.value("reason", std::string());
  if (auto it = j.find("input"); it != j.end()) e.input = *it;
  e.workflow = j.value("workflow", std::string());
  e.version = j.value("version", std::string());
  e.deadline = time_field(j, "deadline");
  if (auto it = j.find("uid"); it != j.end()) e.uid = it->get<uint32_t>();
  return e;
}

}  // namespace saga
