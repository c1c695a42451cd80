// A step type as the workflow loader checks steps against it, made from what its plugin declares.
// Header-only, for the binaries that link both the plugin host and the loader (sagad, sagactl).
#pragma once

#include <iterator>

#include "plugin_host/plugin_registry.hpp"
#include "workflow/loader.hpp"

namespace saga {

// A parameter's declared type as workflows and schemas name it.
inline const char* param_type_name(saga_param_type type) {
  static constexpr const char* kTypes[] = {"any",     "string", "integer", "number",
                                           "boolean", "array",  "object"};
  auto t = static_cast<size_t>(type);
  return t < std::size(kTypes) ? kTypes[t] : "any";
}

inline StepSchema schema_of(const StepTypeInfo& info) {
  StepSchema schema;
  for (const auto& p : info.params) {
    schema.params.push_back({p.name, param_type_name(p.type), p.required});
  }
  schema.accepts_any_params = info.accepts_any_params;
  schema.can_compensate = info.can_compensate;
  return schema;
}

}  // namespace saga
