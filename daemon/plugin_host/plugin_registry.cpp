#include "plugin_host/plugin_registry.hpp"

#include <algorithm>
#include <boost/dll/import.hpp>
#include <boost/dll/shared_library.hpp>
#include <filesystem>

namespace saga {

namespace fs = std::filesystem;

struct PluginRegistry::Library {
  boost::dll::shared_library library;
};

PluginRegistry::PluginRegistry() = default;
PluginRegistry::~PluginRegistry() = default;

namespace {

std::string text(saga_str s) {
  return s.data ? std::string(s.data, s.size) : std::string();
}

// Reads field `member` of a struct the plugin wrote only when it lies inside its struct_size.
#define SAGA_HAS_FIELD(ptr, type, member) \
  ((ptr)->struct_size >= offsetof(type, member) + sizeof(((type*)nullptr)->member))

struct HostContext {
  const std::atomic<bool>* cancelled;
  const PluginLogFn* log;
  AttemptReply reply;
  bool has_result = false;
};

void host_set_result(void* ctx, uint32_t outcome, const char* data, size_t size) {
  auto* h = static_cast<HostContext*>(ctx);
  h->has_result = true;
  h->reply.outcome =
      outcome <= SAGA_OUTCOME_FAIL ? static_cast<saga_outcome>(outcome) : SAGA_OUTCOME_RETRY;
  h->reply.data.assign(data ? data : "", data ? size : 0);
}

int host_cancelled(void* ctx) {
  return static_cast<HostContext*>(ctx)->cancelled->load() ? 1 : 0;
}

void host_log(void* ctx, uint32_t level, const char* message, size_t size) {
  auto* h = static_cast<HostContext*>(ctx);
  if (*h->log) (*h->log)(level, std::string_view(message ? message : "", message ? size : 0));
}

const saga_host_api kHostApi = {sizeof(saga_host_api), &host_set_result, &host_cancelled,
                                &host_log};

}  // namespace

Result<void> PluginRegistry::load_file(const std::string& path) {
  auto lib = std::make_unique<Library>();
  const saga_plugin* plugin = nullptr;
  try {
    lib->library.load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    if (!lib->library.has(SAGA_PLUGIN_ENTRY_SYMBOL)) {
      return make_error(ErrorCode::invalid_argument,
                        "plugin " + path +
                            ": not a saga plugin (no " SAGA_PLUGIN_ENTRY_SYMBOL
                            " symbol); build it with SAGA_PLUGIN from the saga SDK");
    }
    auto entry =
        boost::dll::import_alias<const saga_plugin*()>(lib->library, SAGA_PLUGIN_ENTRY_SYMBOL);
    plugin = entry();
  } catch (const std::exception& e) {
    return make_error(ErrorCode::invalid_argument,
                      "plugin " + path + ": cannot be loaded: " + e.what());
  }
  if (!plugin) {
    return make_error(ErrorCode::invalid_argument, "plugin " + path + ": returned no descriptor");
  }
  if (plugin->abi_major != SAGA_ABI_MAJOR) {
    return make_error(ErrorCode::invalid_argument,
                      "plugin " + path + ": built for plugin ABI " +
                          std::to_string(plugin->abi_major) + "." +
                          std::to_string(plugin->abi_minor) + ", this sagad speaks ABI " +
                          std::to_string(SAGA_ABI_MAJOR) + ".x; rebuild it against this SDK");
  }
  if (!SAGA_HAS_FIELD(plugin, saga_plugin, step_type_count)) {
    return make_error(ErrorCode::invalid_argument,
                      "plugin " + path + ": its descriptor is too short to be a saga plugin");
  }
  std::vector<std::unique_ptr<StepTypeInfo>> types;
  for (size_t i = 0; i < plugin->step_type_count; ++i) {
    const saga_step_type* t = &plugin->step_types[i];
    if (!SAGA_HAS_FIELD(t, saga_step_type, run) || !t->run) {
      return make_error(ErrorCode::invalid_argument, "plugin " + path + ": step type " +
                                                         std::to_string(i) + " has no entry point");
    }
    auto info = std::make_unique<StepTypeInfo>();
    info->name = text(t->name);
    info->description = text(t->description);
    info->file = path;
    info->accepts_any_params = t->accepts_any_params != 0;
    info->can_compensate = SAGA_HAS_FIELD(t, saga_step_type, compensate) && t->compensate;
    info->entry = t;
    for (size_t j = 0; j < t->param_count; ++j) {
      const saga_param* p = &t->params[j];
      ParamSpec spec;
      spec.name = text(p->name);
      spec.type = static_cast<saga_param_type>(p->type);
      spec.required = p->required != 0;
      if (SAGA_HAS_FIELD(p, saga_param, default_json) && p->default_json.size > 0) {
        spec.default_value = nlohmann::json::parse(text(p->default_json), nullptr, false);
        if (spec.default_value.is_discarded()) spec.default_value = nullptr;
      }
      if (SAGA_HAS_FIELD(p, saga_param, description)) spec.description = text(p->description);
      info->params.push_back(std::move(spec));
    }
    if (const StepTypeInfo* other = find(info->name)) {
      return make_error(ErrorCode::already_exists, "plugin " + path + ": step type " + info->name +
                                                       " is already provided by " + other->file +
                                                       "; remove one of them");
    }
    for (const auto& mine : types) {
      if (mine->name == info->name) {
        return make_error(ErrorCode::already_exists,
                          "plugin " + path + ": declares step type " + info->name + " twice");
      }
    }
    types.push_back(std::move(info));
  }
  PluginInfo pi;
  pi.file = path;
  pi.name = text(plugin->name);
  pi.version = text(plugin->version);
  pi.abi_major = plugin->abi_major;
  pi.abi_minor = plugin->abi_minor;
  for (const auto& t : types) pi.step_types.push_back(t->name);
  plugins_.push_back(std::move(pi));
  for (auto& t : types) types_.push_back(std::move(t));
  libraries_.push_back(std::move(lib));
  return {};
}

std::vector<Error> PluginRegistry::load_directory(const std::string& dir) {
  std::vector<Error> errors;
  std::error_code ec;
  std::vector<std::string> files;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (it->path().extension() == ".so") files.push_back(it->path().string());
  }
  if (ec) {
    errors.push_back(
        {ErrorCode::not_found, "cannot read plugin directory " + dir + ": " + ec.message()});
    return errors;
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    bool loaded = std::any_of(plugins_.begin(), plugins_.end(),
                              [&](const PluginInfo& p) { return p.file == f; });
    if (loaded) continue;  // a reload adds new plugins; loaded ones are never unloaded
    if (auto r = load_file(f); !r) errors.push_back(r.error());
  }
  return errors;
}

const StepTypeInfo* PluginRegistry::find(std::string_view step_type) const {
  for (const auto& t : types_) {
    if (t->name == step_type) return t.get();
  }
  return nullptr;
}

std::vector<const StepTypeInfo*> PluginRegistry::step_types() const {
  std::vector<const StepTypeInfo*> out;
  for (const auto& t : types_) out.push_back(t.get());
  return out;
}

AttemptReply PluginRegistry::invoke(const StepTypeInfo& type, const AttemptRequest& r,
                                    const std::atomic<bool>& cancelled, const PluginLogFn& log) {
  HostContext ctx{&cancelled, &log, {}, false};
  auto s = [](const std::string& v) { return saga_str{v.data(), v.size()}; };
  saga_attempt a{};
  a.struct_size = sizeof(saga_attempt);
  a.host_ctx = &ctx;
  a.host = &kHostApi;
  a.instance_id = s(r.instance_id);
  a.workflow = s(r.workflow);
  a.step = s(r.step);
  a.idempotency_key = s(r.idempotency_key);
  a.attempt = r.attempt;
  a.phase = r.phase;
  a.deadline_unix_ms = r.deadline_unix_ms;
  a.params_json = s(r.params_json);
  a.input_json = s(r.input_json);
  a.steps_json = s(r.steps_json);
  saga_step_fn fn = r.phase == SAGA_PHASE_COMPENSATE ? type.entry->compensate : type.entry->run;
  if (!fn) {
    return {SAGA_OUTCOME_FAIL, "step type " + type.name + " cannot compensate"};
  }
  fn(type.entry->type_ctx, &a);
  if (!ctx.has_result) {
    return {SAGA_OUTCOME_RETRY, "step type " + type.name + " returned no result"};
  }
  return std::move(ctx.reply);
}

}  // namespace saga
