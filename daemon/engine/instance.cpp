#include "engine/instance.hpp"

#include "engine/json_text.hpp"

namespace saga {

std::string_view to_string(InstanceState s) {
  switch (s) {
    case InstanceState::running:
      return "running";
    case InstanceState::completed:
      return "completed";
    case InstanceState::compensating:
      return "compensating";
    case InstanceState::compensated:
      return "compensated";
    case InstanceState::failed:
      return "failed";
    case InstanceState::compensation_failed:
      return "compensation_failed";
  }
  return "unknown";
}

std::string_view to_string(StepState s) {
  switch (s) {
    case StepState::pending:
      return "pending";
    case StepState::running:
      return "running";
    case StepState::succeeded:
      return "succeeded";
    case StepState::failed:
      return "failed";
    case StepState::skipped:
      return "skipped";
    case StepState::compensating:
      return "compensating";
    case StepState::compensated:
      return "compensated";
    case StepState::compensation_failed:
      return "compensation_failed";
  }
  return "unknown";
}

std::string_view to_string(CompensationState s) {
  switch (s) {
    case CompensationState::none:
      return "none";
    case CompensationState::pending:
      return "pending";
    case CompensationState::running:
      return "running";
    case CompensationState::compensated:
      return "compensated";
    case CompensationState::failed:
      return "failed";
  }
  return "unknown";
}

std::string_view to_string(Phase p) {
  return p == Phase::run ? "run" : "compensate";
}

std::optional<InstanceState> parse_instance_state(std::string_view s) {
  for (auto state :
       {InstanceState::running, InstanceState::completed, InstanceState::compensating,
        InstanceState::compensated, InstanceState::failed, InstanceState::compensation_failed}) {
    if (to_string(state) == s) return state;
  }
  return std::nullopt;
}

bool is_terminal(InstanceState s) {
  return s == InstanceState::completed || s == InstanceState::compensated;
}

bool is_settled(InstanceState s) {
  return is_terminal(s) || s == InstanceState::failed || s == InstanceState::compensation_failed;
}

namespace {

void optional_time(JsonText& w, const std::optional<TimePoint>& t) {
  if (t) {
    w.time(*t);
  } else {
    w.null();
  }
}

void optional_text(JsonText& w, const std::string& s) {
  if (s.empty()) {
    w.null();
  } else {
    w.string(s);
  }
}

void header_members(JsonText& w, const Instance& inst) {
  w.key("id").string(inst.id);
  w.key("workflow").string(inst.workflow);
  w.key("version").string(inst.version);
  w.key("state").plain(to_string(inst.state));
  w.key("cause");
  optional_text(w, inst.cause);
}

}  // namespace

std::string instance_header_json_text(const Instance& inst) {
  std::string out;
  out.reserve(192);
  JsonText w(out);
  w.begin_object();
  header_members(w, inst);
  w.key("created_at").time(inst.created_at);
  w.key("updated_at").time(inst.updated_at);
  w.end_object();
  return out;
}

bool is_instance_header(const json& record) {
  return record.is_object() && !record.contains("steps");
}

std::string instance_json_text(const Definition& def, const Instance& inst) {
  std::string out;
  out.reserve(256 + 256 * inst.steps.size());
  JsonText w(out);
  w.begin_object();
  header_members(w, inst);
  w.key("input").value(inst.input);
  w.key("created_at").time(inst.created_at);
  w.key("updated_at").time(inst.updated_at);
  w.key("steps").begin_array();
  for (size_t i = 0; i < inst.steps.size() && i < def.steps.size(); ++i) {
    const StepRun& s = inst.steps[i];
    w.begin_object();
    w.key("name").string(def.steps[i].name);
    w.key("state").plain(to_string(s.state));
    w.key("attempts").number(s.run.attempts);
    w.key("output").value(s.output);
    w.key("error");
    optional_text(w, s.run.error);
    w.key("started_at");
    optional_time(w, s.started_at);
    w.key("ended_at");
    optional_time(w, s.ended_at);
    if (s.run.retry_at) w.key("next_attempt_at").time(*s.run.retry_at);
    w.key("compensation").begin_object();
    w.key("state").plain(to_string(s.compensation));
    w.key("attempts").number(s.comp.attempts);
    w.key("error");
    optional_text(w, s.comp.error);
    if (s.comp.retry_at) w.key("next_attempt_at").time(*s.comp.retry_at);
    w.end_object();
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return out;
}

json instance_to_json(const Definition& def, const Instance& inst) {
  return json::parse(instance_json_text(def, inst));
}

}  // namespace saga
