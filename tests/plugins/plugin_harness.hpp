// Runs built-in plugins in tests the way sagad's plugin host does: the library is loaded with
// dlopen, its descriptor read through the exported entry symbol, and attempts go through the C
// ABI with a host_api that records what the plugin reports. Self-contained, so these tests need
// nothing of the daemon.
#pragma once

#include <dlfcn.h>
#include <saga/plugin_abi.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace saga::test {

using json = nlohmann::json;

// One attempt as the host would describe it.
struct AttemptSpec {
  json params = json::object();
  json input = json::object();
  std::string instance_id = "inst-1";
  std::string workflow = "wf";
  std::string step = "step";
  std::string idempotency_key = "inst-1/step";
  uint32_t attempt = 1;
  saga_phase phase = SAGA_PHASE_RUN;
  std::optional<std::chrono::milliseconds> timeout;  // deadline = start + timeout
  const std::atomic<bool>* cancel = nullptr;         // what Context::cancelled() reports
};

// What the plugin reported for one attempt.
struct Outcome {
  bool reported = false;
  saga_outcome outcome = SAGA_OUTCOME_RETRY;
  std::string data;
  std::vector<std::string> logs;

  json output() const { return json::parse(data); }
};

namespace detail {

struct HostState {
  Outcome outcome;
  const std::atomic<bool>* cancel = nullptr;
};

inline void set_result(void* host_ctx, uint32_t outcome, const char* data, size_t size) {
  auto& state = *static_cast<HostState*>(host_ctx);
  state.outcome.reported = true;
  state.outcome.outcome = static_cast<saga_outcome>(outcome);
  state.outcome.data.assign(data, size);
}

inline int cancelled(void* host_ctx) {
  const auto& state = *static_cast<HostState*>(host_ctx);
  return state.cancel != nullptr && state.cancel->load() ? 1 : 0;
}

inline void log(void* host_ctx, uint32_t, const char* message, size_t size) {
  static_cast<HostState*>(host_ctx)->outcome.logs.emplace_back(message, size);
}

}  // namespace detail

// The descriptor of a plugin in the build's plugin directory, e.g. "saga-exec.so". The library
// stays loaded for the rest of the process, as it does in sagad.
inline const saga_plugin& load_plugin(const std::string& file) {
  const std::string path = std::string(SAGA_PLUGIN_DIR) + "/" + file;
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) FAIL("dlopen " << path << ": " << dlerror());
  void* symbol = dlsym(lib, SAGA_PLUGIN_ENTRY_SYMBOL);
  if (symbol == nullptr) FAIL(path << " exports no " << SAGA_PLUGIN_ENTRY_SYMBOL);
  // The symbol is a pointer to the entry function, as Boost.DLL lays out an alias.
  const void* entry_address = *static_cast<const void* const*>(symbol);
  auto entry = reinterpret_cast<saga_plugin_entry_fn>(const_cast<void*>(entry_address));
  const saga_plugin* plugin = entry();
  REQUIRE(plugin != nullptr);
  REQUIRE(plugin->abi_major == SAGA_ABI_MAJOR);
  REQUIRE(plugin->struct_size >= sizeof(saga_plugin));
  return *plugin;
}

inline std::string_view view(saga_str s) {
  return {s.data, s.size};
}

inline const saga_step_type& find_type(const saga_plugin& plugin, std::string_view name) {
  for (size_t i = 0; i < plugin.step_type_count; ++i) {
    if (view(plugin.step_types[i].name) == name) return plugin.step_types[i];
  }
  FAIL("no step type " << name);
  throw std::logic_error("unreachable");
}

inline const saga_param* find_param(const saga_step_type& type, std::string_view name) {
  for (size_t i = 0; i < type.param_count; ++i) {
    if (view(type.params[i].name) == name) return &type.params[i];
  }
  return nullptr;
}

// Runs one attempt on the calling thread; the phase picks run or compensate.
inline Outcome run_attempt(const saga_step_type& type, const AttemptSpec& spec) {
  static const saga_host_api host{sizeof(saga_host_api), &detail::set_result, &detail::cancelled,
                                  &detail::log};
  detail::HostState state;
  state.cancel = spec.cancel;
  const std::string params = spec.params.dump();
  const std::string input = spec.input.dump();
  const std::string steps = "{}";
  auto str = [](const std::string& s) { return saga_str{s.data(), s.size()}; };
  int64_t deadline = 0;
  if (spec.timeout) {
    deadline = std::chrono::duration_cast<std::chrono::milliseconds>(
                   (std::chrono::system_clock::now() + *spec.timeout).time_since_epoch())
                   .count();
  }
  const saga_attempt attempt{sizeof(saga_attempt),
                             &state,
                             &host,
                             str(spec.instance_id),
                             str(spec.workflow),
                             str(spec.step),
                             str(spec.idempotency_key),
                             spec.attempt,
                             static_cast<uint32_t>(spec.phase),
                             deadline,
                             str(params),
                             str(input),
                             str(steps)};
  if (spec.phase == SAGA_PHASE_COMPENSATE) {
    REQUIRE(type.compensate != nullptr);
    type.compensate(type.type_ctx, &attempt);
  } else {
    type.run(type.type_ctx, &attempt);
  }
  REQUIRE(state.outcome.reported);
  return state.outcome;
}

}  // namespace saga::test
