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
  w.key("at").time(e.at);
  w.key("type").plain(to_string(e.type));
  if (!e.step.empty()) w.key("step").string(e.step);
  if (e.attempt != 0) w.key("attempt").number(e.attempt);
  if (e.type == EventType::step_succeeded) w.key("output").value(e.output);
  if (!e.error.empty()) w.key("error").string(e.error);
  if (e.retry_at) w.key("retry_at").time(*e.retry_at);
  if (!e.cause.empty()) w.key("cause").string(e.cause);
  if (!e.reason.empty()) w.key("reason").string(e.reason);
  if (!e.input.is_null()) w.key("input").value(e.input);
  if (!e.workflow.empty()) w.key("workflow").string(e.workflow);
  if (!e.version.empty()) w.key("version").string(e.version);
  if (e.deadline) w.key("deadline").time(*e.deadline);
  if (e.uid) w.key("uid").number(*e.uid);
  if (e.gid) w.key("gid").number(*e.gid);
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

// Reads the event objects the journal holds, without building a tree: recovery reads every
// event of every instance in flight. It handles the common shapes only (plain ASCII strings with
// simple escapes, unsigned integers, known keys) and gives up on anything else, leaving that
// text to nlohmann, so every text reads exactly as nlohmann and event_from_json read it.
class EventReader {
 public:
  explicit EventReader(std::string_view text) : s_(text) {}

  // False: the text is not in the common shape (it may still be valid); `e` is then unusable.
  // Throws nlohmann::json::exception only from parsing an `input` or `output` value.
  bool read(Event& e) {
    if (!take('{')) return false;
    bool seq = false, at = false, type = false;
    std::string_view key;
    do {
      if (!plain_string(key) || !take(':')) return false;
      bool ok = false;
      if (key == "seq") {
        ok = seq = number(e.seq);
      } else if (key == "at") {
        ok = at = time(e.at);
      } else if (key == "type") {
        std::string_view name;
        std::optional<EventType> t;
        if (plain_string(name)) t = parse_event_type(name);
        if (t) e.type = *t;
        ok = type = t.has_value();
      } else if (key == "step") {
        ok = string(e.step);
      } else if (key == "attempt") {
        ok = number32(e.attempt);
      } else if (key == "output") {
        ok = value(e.output);
      } else if (key == "error") {
        ok = string(e.error);
      } else if (key == "retry_at") {
        ok = time(e.retry_at.emplace());
      } else if (key == "cause") {
        ok = string(e.cause);
      } else if (key == "reason") {
        ok = string(e.reason);
      } else if (key == "input") {
        ok = value(e.input);
      } else if (key == "workflow") {
        ok = string(e.workflow);
      } else if (key == "version") {
        ok = string(e.version);
      } else if (key == "deadline") {
        ok = time(e.deadline.emplace());
      } else if (key == "uid") {
        ok = number32(e.uid.emplace());
      } else if (key == "gid") {
        ok = number32(e.gid.emplace());
      }
      if (!ok) return false;
    } while (take(','));
    if (!take('}')) return false;
    skip_space();
    return pos_ == s_.size() && seq && at && type;
  }

 private:
  void skip_space() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool take(char c) {
    skip_space();
    if (pos_ >= s_.size() || s_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  // An ASCII string; \uXXXX escapes and other bytes are left to nlohmann, which checks UTF-8.
  bool string(std::string& out) {
    if (!take('"')) return false;
    out.clear();
    for (;;) {
      size_t run = plain_run();
      out.append(s_.data() + pos_, run);
      pos_ += run;
      if (pos_ >= s_.size()) return false;
      char c = s_[pos_++];
      if (c == '"') return true;
      if (c != '\\' || pos_ >= s_.size()) return false;
      static constexpr std::string_view kEscaped = "\"\\/bfnrt", kMeant = "\"\\/\b\f\n\r\t";
      size_t which = kEscaped.find(s_[pos_++]);
      if (which == std::string_view::npos) return false;
      out += kMeant[which];
    }
  }
  // A string without escapes, viewed in place.
  bool plain_string(std::string_view& out) {
    if (!take('"')) return false;
    size_t run = plain_run();
    if (pos_ + run >= s_.size() || s_[pos_ + run] != '"') return false;
    out = s_.substr(pos_, run);
    pos_ += run + 1;
    return true;
  }
  // The length of the run at pos_ that stands for itself in a JSON string.
  size_t plain_run() const {
    size_t end = pos_;
    while (end < s_.size() && kJsonPlainByte[static_cast<unsigned char>(s_[end])]) ++end;
    return end - pos_;
  }
  // An unsigned integer of at most 19 digits, which nlohmann reads as number_unsigned too.
  bool number(uint64_t& out) {
    skip_space();
    size_t start = pos_;
    uint64_t n = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      n = n * 10 + static_cast<uint64_t>(s_[pos_++] - '0');
    }
    size_t digits = pos_ - start;
    if (digits == 0 || digits > 19 || (digits > 1 && s_[start] == '0')) return false;
    if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E')) return false;
    out = n;
    return true;
  }
  // As nlohmann's get<uint32_t>() converts a number_unsigned: a static_cast.
  bool number32(uint32_t& out) {
    uint64_t n = 0;
    if (!number(n)) return false;
    out = static_cast<uint32_t>(n);
    return true;
  }
  bool time(TimePoint& out) {
    std::string_view text;
    if (!plain_string(text)) return false;
    auto t = parse_rfc3339(text);
    if (!t) return false;
    out = *t;
    return true;
  }
  // Any JSON value, parsed by nlohmann once its extent is known.
  bool value(json& out) {
    skip_space();
    size_t start = pos_;
    if (pos_ >= s_.size()) return false;
    if (s_[pos_] == '{' || s_[pos_] == '[' || s_[pos_] == '"') {
      int depth = 0;
      bool in_string = false;
      for (; pos_ < s_.size(); ++pos_) {
        char c = s_[pos_];
        if (in_string) {
          if (c == '\\') {
            ++pos_;
          } else if (c == '"') {
            in_string = false;
            if (depth == 0) break;
          }
        } else if (c == '"') {
          in_string = true;
        } else if (c == '{' || c == '[') {
          ++depth;
        } else if ((c == '}' || c == ']') && --depth == 0) {
          break;
        }
      }
      if (pos_ >= s_.size()) return false;
      ++pos_;
    } else {
      while (pos_ < s_.size() && s_[pos_] != ',' && s_[pos_] != '}' && s_[pos_] != ']' &&
             s_[pos_] != ' ' && s_[pos_] != '\t' && s_[pos_] != '\n' && s_[pos_] != '\r') {
        ++pos_;
      }
    }
    std::string_view text = s_.substr(start, pos_ - start);
    if (text == "{}") {
      out = json::object();
    } else {
      out = json::parse(text);
    }
    return true;
  }

  std::string_view s_;
  size_t pos_ = 0;
};

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
  if (auto it = j.find("gid"); it != j.end()) e.gid = it->get<uint32_t>();
  return e;
}

Event event_from_json_text(std::string_view text) {
  Event e;
  try {
    if (EventReader(text).read(e)) return e;
  } catch (const json::exception&) {
    // Left to nlohmann below, whose message then names the fault in the whole text.
  }
  return event_from_json(json::parse(text));
}

}  // namespace saga
