// The C++ layer plugin authors write against: Step, Context, Result and SAGA_PLUGIN.
//
// Header-only, on top of plugin_abi.h. Nothing C++ crosses the boundary: this layer turns the
// C attempt into a Context, calls the Step, and hands the Result back through the host's
// set_result callback. Any exception a Step throws becomes a transient failure here, inside the
// plugin.
#pragma once

#include <saga/plugin_abi.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace saga {

using json = nlohmann::json;

enum class Phase { run = SAGA_PHASE_RUN, compensate = SAGA_PHASE_COMPENSATE };
enum class LogLevel {
  debug = SAGA_LOG_DEBUG,
  info = SAGA_LOG_INFO,
  warn = SAGA_LOG_WARN,
  error = SAGA_LOG_ERROR
};

enum class ParamType {
  any = SAGA_PARAM_ANY,
  string = SAGA_PARAM_STRING,
  integer = SAGA_PARAM_INTEGER,
  number = SAGA_PARAM_NUMBER,
  boolean = SAGA_PARAM_BOOLEAN,
  array = SAGA_PARAM_ARRAY,
  object = SAGA_PARAM_OBJECT,
};

// The outcome of one attempt.
class Result {
 public:
  enum class Kind { ok = SAGA_OUTCOME_OK, retry = SAGA_OUTCOME_RETRY, fail = SAGA_OUTCOME_FAIL };

  // Success; `output` becomes the step's output, visible to later steps as
  // ${{ steps.NAME.output... }}.
  static Result ok(json output = json::object()) { return Result(Kind::ok, std::move(output), {}); }
  // A transient failure: the attempt is retried under the step's retry policy.
  static Result retry(std::string error) { return Result(Kind::retry, {}, std::move(error)); }
  // A permanent failure: no more attempts.
  static Result fail(std::string error) { return Result(Kind::fail, {}, std::move(error)); }

  Kind kind() const { return kind_; }
  const json& output() const { return output_; }
  const std::string& error() const { return error_; }

 private:
  Result(Kind kind, json output, std::string error)
      : kind_(kind), output_(std::move(output)), error_(std::move(error)) {}
  Kind kind_;
  json output_;
  std::string error_;
};

// What a step sees of its attempt. Lives for one run()/compensate() call; use it only from the
// thread that called the step.
class Context {
 public:
  explicit Context(const saga_attempt& attempt) : a_(attempt) {}
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // The rendered `with:` parameters (an object).
  const json& params() const { return parsed(params_, a_.params_json); }
  // The instance input.
  const json& input() const { return parsed(input_, a_.input_json); }
  // {"NAME": {"output": ...}} for every step that has succeeded so far.
  const json& steps() const { return parsed(steps_, a_.steps_json); }

  // A parameter, or `fallback` when it is absent or null.
  template <class T>
  T param(const std::string& name, T fallback) const {
    const json& p = params();
    auto it = p.find(name);
    if (it == p.end() || it->is_null()) return fallback;
    return it->template get<T>();
  }

  std::string_view instance_id() const { return view(a_.instance_id); }
  std::string_view workflow() const { return view(a_.workflow); }
  // The step's name; in a compensation, the step being undone.
  std::string_view step() const { return view(a_.step); }
  // "instance-id/step-name": the same for every attempt of the step, for deduplication.
  std::string_view idempotency_key() const { return view(a_.idempotency_key); }
  // 1-based; a compensation counts its own attempts.
  uint32_t attempt() const { return a_.attempt; }
  Phase phase() const { return a_.phase == SAGA_PHASE_COMPENSATE ? Phase::compensate : Phase::run; }

  // When the attempt's timeout expires; nullopt when it has none.
  std::optional<std::chrono::system_clock::time_point> deadline() const {
    if (a_.deadline_unix_ms == 0) return std::nullopt;
    return std::chrono::system_clock::time_point(std::chrono::milliseconds(a_.deadline_unix_ms));
  }

  // True once the attempt should stop (cancelled, timed out, daemon stopping). Long work polls
  // it and returns Result::retry when it is set.
  bool cancelled() const { return a_.host->cancelled(a_.host_ctx) != 0; }

  void log(LogLevel level, std::string_view message) const {
    a_.host->log(a_.host_ctx, static_cast<uint32_t>(level), message.data(), message.size());
  }

 private:
  static std::string_view view(saga_str s) { return {s.data, s.size}; }
  static const json& parsed(std::optional<json>& cache, saga_str text) {
    if (!cache) {
      cache = text.size == 0 ? json::object() : json::parse(std::string_view(text.data, text.size));
    }
    return *cache;
  }

  const saga_attempt& a_;
  mutable std::optional<json> params_, input_, steps_;
};

// A step type's implementation. One object is made per attempt, so members need no locking.
class Step {
 public:
  virtual ~Step() = default;
  virtual Result run(Context& ctx) = 0;
  // Undoes a succeeded run. Only called when the step type was declared with a compensation.
  virtual Result compensate(Context&) { return Result::fail("this step type cannot compensate"); }
};

// A parameter a step type accepts in `with:`, declared as data so that sagad validates workflows
// when it loads them and `sagactl plugins` can print the documentation.
struct Param {
  std::string name;
  ParamType type = ParamType::any;
  bool required = false;
  json default_value = nullptr;  // null: no default
  std::string description;
};

// A step type: its name, what it does, its parameters, and how to make a Step.
struct StepType {
  std::string name;
  std::string description;
  std::vector<Param> params;
  std::function<std::unique_ptr<Step>()> make;
  bool can_compensate = false;
  bool accepts_any_params = false;
  // Runs on sagad's loop thread rather than a worker: only for steps that return at once and
  // never block (pure computation). See SAGA_STEP_INLINE.
  bool runs_inline = false;
};

// Declares a step type implemented by class T (default-constructible, derived from Step).
template <class T>
StepType step_type(std::string name, std::string description, std::vector<Param> params = {},
                   bool can_compensate = false) {
  return StepType{std::move(name),
                  std::move(description),
                  std::move(params),
                  [] { return std::unique_ptr<Step>(std::make_unique<T>()); },
                  can_compensate,
                  false,
                  false};
}

namespace detail {

inline saga_str str(const std::string& s) {
  return saga_str{s.data(), s.size()};
}

inline void deliver(const saga_attempt* a, const Result& r) {
  if (r.kind() == Result::Kind::ok) {
    std::string text = r.output().dump();
    a->host->set_result(a->host_ctx, SAGA_OUTCOME_OK, text.data(), text.size());
  } else {
    a->host->set_result(a->host_ctx, static_cast<uint32_t>(r.kind()), r.error().data(),
                        r.error().size());
  }
}

// Runs one attempt; no exception leaves this function.
inline void invoke(void* type_ctx, const saga_attempt* a, Phase phase) noexcept {
  try {
    const auto& type = *static_cast<const StepType*>(type_ctx);
    Context ctx(*a);
    std::unique_ptr<Step> step = type.make();
    deliver(a, phase == Phase::run ? step->run(ctx) : step->compensate(ctx));
  } catch (const std::exception& e) {
    deliver(a, Result::retry(std::string("step threw an exception: ") + e.what()));
  } catch (...) {
    deliver(a, Result::retry("step threw an exception of unknown type"));
  }
}

inline void run_trampoline(void* type_ctx, const saga_attempt* a) {
  invoke(type_ctx, a, Phase::run);
}
inline void compensate_trampoline(void* type_ctx, const saga_attempt* a) {
  invoke(type_ctx, a, Phase::compensate);
}

// Owns the C descriptor and everything its pointers point into, for the library's lifetime.
class PluginDescriptor {
 public:
  PluginDescriptor(std::string name, std::string version, std::vector<StepType> types)
      : name_(std::move(name)), version_(std::move(version)), types_(std::move(types)) {
    params_.resize(types_.size());
    defaults_.resize(types_.size());
    for (size_t i = 0; i < types_.size(); ++i) {
      const StepType& t = types_[i];
      defaults_[i].reserve(t.params.size());
      for (const Param& p : t.params) {
        defaults_[i].push_back(p.default_value.is_null() ? std::string() : p.default_value.dump());
      }
      for (size_t j = 0; j < t.params.size(); ++j) {
        const Param& p = t.params[j];
        params_[i].push_back(saga_param{sizeof(saga_param), str(p.name),
                                        static_cast<uint32_t>(p.type), p.required ? 1u : 0u,
                                        str(defaults_[i][j]), str(p.description)});
      }
    }
    for (size_t i = 0; i < types_.size(); ++i) {
      const StepType& t = types_[i];
      c_types_.push_back(saga_step_type{
          sizeof(saga_step_type), str(t.name), str(t.description), params_[i].data(),
          params_[i].size(), t.accepts_any_params ? 1u : 0u, const_cast<StepType*>(&types_[i]),
          &run_trampoline, t.can_compensate ? &compensate_trampoline : nullptr,
          t.runs_inline ? SAGA_STEP_INLINE : 0u});
    }
    plugin_ = saga_plugin{SAGA_ABI_MAJOR, SAGA_ABI_MINOR,  sizeof(saga_plugin), str(name_),
                          str(version_),  c_types_.data(), c_types_.size()};
  }
  PluginDescriptor(const PluginDescriptor&) = delete;
  PluginDescriptor& operator=(const PluginDescriptor&) = delete;

  const saga_plugin* get() const { return &plugin_; }

 private:
  std::string name_, version_;
  std::vector<StepType> types_;
  std::vector<std::vector<std::string>> defaults_;
  std::vector<std::vector<saga_param>> params_;
  std::vector<saga_step_type> c_types_;
  saga_plugin plugin_{};
};

}  // namespace detail
}  // namespace saga

// Declares the plugin: its name, version, and a braced list of saga::StepType. Use once per
// plugin, at namespace scope in one source file:
//
//   SAGA_PLUGIN("shop", "1.0", {saga::step_type<Reserve>("shop.reserve", "Reserves stock")})
//
// The exported symbol is an alias in Boost.DLL's layout (a pointer to the entry function), so
// the host loads it with boost::dll::import_alias; it stays visible under -fvisibility=hidden.
#define SAGA_PLUGIN(NAME, VERSION, ...)                                                   \
  static const saga_plugin* saga_plugin_entry_impl() {                                    \
    static const ::saga::detail::PluginDescriptor descriptor(NAME, VERSION, __VA_ARGS__); \
    return descriptor.get();                                                              \
  }                                                                                       \
  extern "C" __attribute__((visibility("default"))) const void* saga_plugin_entry;        \
  const void* saga_plugin_entry = reinterpret_cast<const void*>(&saga_plugin_entry_impl)
