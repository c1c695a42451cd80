// ${{ ... }} templates in `with:` parameters (DESIGN §3): path lookups only, no code.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/error.hpp"

namespace saga {

// What templates can see. `steps` is {"NAME": {"output": ...}} for succeeded steps; `secrets`
// resolves ${{ secrets.NAME }} (nullopt: no such secret).
struct TemplateScope {
  const nlohmann::json* input = nullptr;
  const nlohmann::json* steps = nullptr;
  std::string instance_id;
  std::string workflow;
  // ${{ schedule.fire_time }}: RFC 3339 UTC; nullopt when the instance was not started by a
  // schedule.
  std::optional<std::string> schedule_fire_time;
  std::function<std::optional<std::string>(const std::string& name)> secret;
};

struct Rendered {
  nlohmann::json value;
  bool used_secret = false;  // the value holds a secret: never journal or log it
};

// Renders every string in `value`. A string that is exactly one template keeps the JSON type of
// what it names; other strings get each template's value stringified. A path that does not
// exist is an error naming it (a permanent failure of the attempt).
Result<Rendered> render_templates(const nlohmann::json& value, const TemplateScope& scope);

// One template reference found in a value, for validation at load time.
struct TemplateRef {
  std::string expression;         // "steps.reserve.output.id"
  std::vector<std::string> path;  // {"steps", "reserve", "output", "id"}
};

// Every template in every string of `value`; malformed templates, and templates written in an
// object's keys (which are not rendered), are an error naming them.
Result<std::vector<TemplateRef>> find_templates(const nlohmann::json& value);

// Whether `text` holds a template's opening "${{".
bool has_template(std::string_view text);

// The error for a template written in a mapping's key.
std::string template_in_key(std::string_view key);

}  // namespace saga
