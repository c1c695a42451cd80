#include "workflow/template.hpp"

#include <string_view>
#include <variant>

namespace saga {
namespace {

using nlohmann::json;

constexpr std::string_view kOpen = "${{";
constexpr std::string_view kClose = "}}";

// A string split into literal text and templates, in order.
using Piece = std::variant<std::string, TemplateRef>;

bool is_path_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string shown(std::string_view raw) {
  std::string out;
  out.reserve(raw.size() + 2);
  out += '"';
  out += raw;
  out += '"';
  return out;
}

// Step names may contain dots, so in `steps.NAME.output...` the name is everything between
// `steps.` and the first `.output`; it becomes one path element.
std::vector<std::string> group_step_name(std::vector<std::string> segments) {
  if (segments.size() < 3 || segments[0] != "steps") return segments;
  for (size_t i = 2; i < segments.size(); ++i) {
    if (segments[i] != "output") continue;
    if (i == 2) return segments;
    std::string name = segments[1];
    for (size_t j = 2; j < i; ++j) name += "." + segments[j];
    std::vector<std::string> out{"steps", std::move(name)};
    out.insert(out.end(), segments.begin() + static_cast<std::ptrdiff_t>(i), segments.end());
    return out;
  }
  return segments;
}

Result<TemplateRef> parse_expression(std::string_view raw, std::string_view inner) {
  size_t b = 0, e = inner.size();
  while (b < e && is_space(inner[b])) ++b;
  while (e > b && is_space(inner[e - 1])) --e;
  const std::string_view expr = inner.substr(b, e - b);
  if (expr.empty()) {
    return make_error(
        ErrorCode::invalid_argument,
        "template " + shown(raw) + " is empty; write a path such as ${{ input.order_id }}");
  }
  std::vector<std::string> segments(1);
  for (char c : expr) {
    if (c == '.') {
      segments.emplace_back();
    } else if (is_path_char(c)) {
      segments.back() += c;
    } else {
      return make_error(ErrorCode::invalid_argument,
                        "template " + shown(raw) +
                            " is not a dotted path: templates are path lookups only, such as "
                            "${{ steps.NAME.output.field }}, made of letters, digits, '_' and '-' "
                            "separated by '.'");
    }
  }
  for (const std::string& s : segments) {
    if (s.empty()) {
      return make_error(ErrorCode::invalid_argument,
                        "template " + shown(raw) + " has an empty path element (check the dots)");
    }
  }
  return TemplateRef{std::string(expr), group_step_name(std::move(segments))};
}

Result<std::vector<Piece>> split_templates(std::string_view text) {
  std::vector<Piece> pieces;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t open = text.find(kOpen, pos);
    if (open == std::string_view::npos) {
      pieces.emplace_back(std::string(text.substr(pos)));
      break;
    }
    if (open > pos) pieces.emplace_back(std::string(text.substr(pos, open - pos)));
    const size_t close = text.find(kClose, open + kOpen.size());
    if (close == std::string_view::npos) {
      return make_error(ErrorCode::invalid_argument,
                        "template " + shown(text.substr(open)) + " is not closed with }}");
    }
    const std::string_view raw = text.substr(open, close + kClose.size() - open);
    const std::string_view inner = text.substr(open + kOpen.size(), close - open - kOpen.size());
    auto ref = parse_expression(raw, inner);
    if (!ref) return std::unexpected(std::move(ref.error()));
    pieces.emplace_back(std::move(*ref));
    pos = close + kClose.size();
  }
  return pieces;
}

std::string describe(const json& j) {
  switch (j.type()) {
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::null:
      return "null";
    default:
      return "a number";
  }
}

bool all_digits(const std::string& s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return !s.empty();
}

class Renderer {
 public:
  explicit Renderer(const TemplateScope& scope) : scope_(scope) {}

  Result<json> render(const json& value) {
    if (value.is_string()) return render_string(value.get_ref<const std::string&>());
    if (value.is_object()) {
      json out = json::object();
      for (auto it = value.begin(); it != value.end(); ++it) {
        auto r = render(it.value());
        if (!r) return r;
        out[it.key()] = std::move(*r);
      }
      return out;
    }
    if (value.is_array()) {
      json out = json::array();
      for (const json& v : value) {
        auto r = render(v);
        if (!r) return r;
        out.push_back(std::move(*r));
      }
      return out;
    }
    return value;
  }

  bool used_secret() const { return used_secret_; }

 private:
  Result<json> render_string(const std::string& text) {
    if (!has_template(text)) return json(text);
    auto pieces = split_templates(text);
    if (!pieces) return std::unexpected(std::move(pieces.error()));
    if (pieces->size() == 1 && std::holds_alternative<TemplateRef>(pieces->front())) {
      return resolve(std::get<TemplateRef>(pieces->front()));
    }
    std::string out;
    for (const Piece& p : *pieces) {
      if (const auto* literal = std::get_if<std::string>(&p)) {
        out += *literal;
        continue;
      }
      auto v = resolve(std::get<TemplateRef>(p));
      if (!v) return v;
      out += v->is_string() ? v->get<std::string>() : v->dump();
    }
    return json(std::move(out));
  }

  Result<json> resolve(const TemplateRef& ref) {
    const std::vector<std::string>& path = ref.path;
    const std::string& root = path[0];
    if (root == "input") {
      static const json kEmpty = json::object();
      return walk(ref, scope_.input ? *scope_.input : kEmpty, "input", 1);
    }
    if (root == "steps" && path.size() >= 2) {
      const json* steps = scope_.steps;
      if (!steps || !steps->is_object() || !steps->contains(path[1])) {
        return fail(ref, "step \"" + path[1] + "\" has not succeeded, so it has no output");
      }
      return walk(ref, (*steps)[path[1]], "steps." + path[1], 2);
    }
    if (path.size() == 2 && root == "instance" && path[1] == "id") return json(scope_.instance_id);
    if (path.size() == 2 && root == "workflow" && path[1] == "name") return json(scope_.workflow);
    if (path.size() == 2 && root == "schedule" && path[1] == "fire_time") {
      if (!scope_.schedule_fire_time) {
        return fail(ref, "this instance was not started by a schedule, so it has no fire time");
      }
      return json(*scope_.schedule_fire_time);
    }
    if (path.size() == 2 && root == "secrets") {
      std::optional<std::string> secret;
      if (scope_.secret) secret = scope_.secret(path[1]);
      if (!secret) return fail(ref, "no secret named \"" + path[1] + "\"");
      used_secret_ = true;
      return json(std::move(*secret));
    }
    return fail(ref,
                "not a name templates know; they can use input..., steps.NAME.output..., "
                "instance.id, workflow.name, schedule.fire_time and secrets.NAME");
  }

  Result<json> walk(const TemplateRef& ref, const json& start, std::string prefix, size_t from) {
    const json* cur = &start;
    for (size_t i = from; i < ref.path.size(); ++i) {
      const std::string& seg = ref.path[i];
      if (cur->is_object()) {
        auto it = cur->find(seg);
        if (it == cur->end()) return fail(ref, prefix + " has no key \"" + seg + "\"");
        cur = &*it;
      } else if (cur->is_array() && all_digits(seg)) {
        // More digits than any index can have: out of range, without overflowing stoull.
        const size_t index = seg.size() > 18 ? cur->size() : std::stoull(seg);
        if (index >= cur->size()) {
          return fail(ref, prefix + " has no index " + seg + " (it has " +
                               std::to_string(cur->size()) + " elements)");
        }
        cur = &(*cur)[index];
      } else {
        return fail(ref, prefix + " is " + describe(*cur) + ", so it has no \"" + seg + "\"");
      }
      prefix += "." + seg;
    }
    return *cur;
  }

  static std::unexpected<Error> fail(const TemplateRef& ref, const std::string& why) {
    return make_error(ErrorCode::invalid_argument,
                      "template ${{ " + ref.expression + " }}: " + why);
  }

  const TemplateScope& scope_;
  bool used_secret_ = false;
};

}  // namespace

bool has_template(std::string_view text) {
  return text.find(kOpen) != std::string_view::npos;
}

std::string template_in_key(std::string_view key) {
  return "the key \"" + std::string(key) +
         "\" holds a template, and keys are not rendered; use a fixed key and put the template "
         "in its value";
}

namespace {

void collect(const json& value, std::vector<TemplateRef>& out, std::vector<std::string>& errors) {
  if (value.is_string()) {
    const auto& text = value.get_ref<const std::string&>();
    if (!has_template(text)) return;
    auto pieces = split_templates(text);
    if (!pieces) {
      errors.push_back(pieces.error().message);
      return;
    }
    for (Piece& p : *pieces) {
      if (auto* ref = std::get_if<TemplateRef>(&p)) out.push_back(std::move(*ref));
    }
  } else if (value.is_object()) {
    for (const auto& [key, v] : value.items()) {
      if (has_template(key)) errors.push_back(template_in_key(key));
      collect(v, out, errors);
    }
  } else if (value.is_array()) {
    for (const json& v : value) collect(v, out, errors);
  }
}

}  // namespace

Result<Rendered> render_templates(const nlohmann::json& value, const TemplateScope& scope) {
  Renderer renderer(scope);
  auto v = renderer.render(value);
  if (!v) return std::unexpected(std::move(v.error()));
  return Rendered{std::move(*v), renderer.used_secret()};
}

Result<std::vector<TemplateRef>> find_templates(const nlohmann::json& value) {
  std::vector<TemplateRef> refs;
  std::vector<std::string> errors;
  collect(value, refs, errors);
  if (!errors.empty()) {
    std::string message;
    for (const std::string& e : errors) {
      if (!message.empty()) message += '\n';
      message += e;
    }
    return make_error(ErrorCode::invalid_argument, std::move(message));
  }
  return refs;
}

}  // namespace saga
