#include "plugin_host/plugin_registry.hpp"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/dll/import.hpp>
#include <boost/dll/shared_library.hpp>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <exception>
#include <filesystem>
#include <optional>
#include <system_error>
#include <utility>

#include "plugin_host/step_schema.hpp"
#include "plugin_host/unique_fd.hpp"

namespace saga {

namespace fs = std::filesystem;

// Owned by the registry for the life of the process; never unloaded. The copy stays open as long
// as the library is loaded: the loader knows a library by the path it was opened with, and a
// number closed and reused for another copy would make dlopen return this library for that one.
// The loader may keep a library after dlclose (one with unique symbols, as under ASan): its copy
// then stays open too.
struct PluginRegistry::Library {
  Library() = default;
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;
  ~Library() {
    library.unload();
    if (copy_fd < 0) return;
    if (void* kept = ::dlopen(copy_path.c_str(), RTLD_NOW | RTLD_NOLOAD)) {
      ::dlclose(kept);
      return;
    }
    ::close(copy_fd);
  }
  int copy_fd = -1;
  std::string copy_path;  // /proc/self/fd/N, or the file itself where no copy can be made
  FileStamp copied_from;
  boost::dll::shared_library library;
};

PluginRegistry::PluginRegistry() = default;
PluginRegistry::~PluginRegistry() = default;

namespace {

std::string text(saga_str s) {
  return s.data ? std::string(s.data, s.size) : std::string();
}

// Where field `member` of `type` ends: a writer's struct contains it whole when its struct_size
// is at least this.
#define SAGA_FIELD_END(type, member) (offsetof(type, member) + sizeof(type::member))

// A plugin's arrays are laid out with its own struct size, which grows as fields are appended,
// so the host steps through them by the size the plugin wrote instead of by sizeof.
template <class Struct>
class StridedArray {
 public:
  StridedArray(const Struct* first, size_t count) : first_(first), count_(count) {}
  const Struct* data() const { return first_; }
  size_t size() const { return count_; }
  uint32_t stride() const { return count_ ? first_->struct_size : 0; }
  const Struct* at(size_t i) const {
    return reinterpret_cast<const Struct*>(reinterpret_cast<const char*>(first_) + i * stride());
  }

 private:
  const Struct* first_;
  size_t count_;
};

std::unexpected<Error> refuse(ErrorCode code, const std::string& path, const std::string& why) {
  return make_error(code, "plugin " + path + ": " + why);
}

// Checks the array's shape before any element beyond the first struct_size is read; every
// element must contain at least the fields up to `required_end`.
template <class Struct>
std::optional<std::string> check_array(const StridedArray<Struct>& array, size_t required_end,
                                       const std::string& what) {
  if (array.size() == 0) return std::nullopt;
  if (!array.data()) {
    return what + " count is " + std::to_string(array.size()) + " but the array is null";
  }
  uint32_t stride = array.stride();
  if (stride < required_end || stride % alignof(Struct) != 0) {
    return what + " entries are " + std::to_string(stride) + " bytes, which no saga ABI " +
           std::to_string(SAGA_ABI_MAJOR) + " layout has; rebuild it against this SDK";
  }
  for (size_t i = 1; i < array.size(); ++i) {
    if (array.at(i)->struct_size != stride) {
      return what + " " + std::to_string(i) + " declares a size of " +
             std::to_string(array.at(i)->struct_size) + " bytes, the first one " +
             std::to_string(stride);
    }
  }
  return std::nullopt;
}

// dlerror() names the copy it loaded: the registry's message names the file, once, up front.
std::string load_failure(const std::string& path, const std::string& copy_path,
                         const std::exception& e) {
  std::string what = e.what();
  static constexpr std::string_view kMarker = "(dlerror system message: ";
  if (auto start = what.find(kMarker); start != std::string::npos) {
    start += kMarker.size();
    auto end = what.rfind(')');
    what = what.substr(start, end > start ? end - start : std::string::npos);
  }
  if (what.starts_with(copy_path + ": ")) what.erase(0, copy_path.size() + 2);
  for (size_t at; (at = what.find(copy_path)) != std::string::npos;) {
    what.replace(at, copy_path.size(), path);
  }
  std::replace(what.begin(), what.end(), '\n', ' ');
  return "cannot be loaded: " + what;
}

// Linux 6.3's MFD_EXEC, which glibc 2.36 does not define: it keeps a memfd executable where
// vm.memfd_noexec=1 would seal it against execution. Older kernels refuse it with EINVAL, and
// every memfd of theirs is executable.
constexpr unsigned kMfdExec = 0x0010U;

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

// Whether `address` lies in an executable segment of the library.
bool in_code_of(const link_map& library, const void* address) {
  struct Search {
    const link_map& library;
    uintptr_t address;
    bool found = false;
  } search{library, reinterpret_cast<uintptr_t>(address)};
  ::dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        auto* s = static_cast<Search*>(data);
        if (info->dlpi_addr != s->library.l_addr ||
            std::strcmp(info->dlpi_name, s->library.l_name) != 0) {
          return 0;
        }
        for (ElfW(Half) i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD || (ph.p_flags & PF_X) == 0) continue;
          const uintptr_t start = info->dlpi_addr + ph.p_vaddr;
          if (s->address >= start && s->address - start < ph.p_memsz) s->found = true;
        }
        return 1;
      },
      &search);
  return search.found;
}

// The ABI's entry symbol is an object holding a pointer to the entry function (what SAGA_PLUGIN
// and BOOST_DLL_ALIAS define). Anything else read as that pointer would send the call wherever its
// bytes point: why this library's symbol is not one, or nullopt when it is.
std::optional<std::string> entry_symbol_problem(void* handle) {
  static constexpr std::string_view kWants =
      ", where the saga ABI declares a pointer to its entry function";
  void* address = ::dlsym(handle, SAGA_PLUGIN_ENTRY_SYMBOL);
  if (!address) return "it exports no " SAGA_PLUGIN_ENTRY_SYMBOL;
  Dl_info info{};
  void* entry = nullptr;  // the symbol's ElfW(Sym)
  if (::dladdr1(address, &info, &entry, RTLD_DL_SYMENT) == 0 || !entry) {
    return "its " SAGA_PLUGIN_ENTRY_SYMBOL " is not in the plugin's own memory" +
           std::string(kWants);
  }
  const auto* symbol = static_cast<const ElfW(Sym)*>(entry);
  const unsigned kind = ELF64_ST_TYPE(symbol->st_info);
  if (kind == STT_FUNC || kind == STT_GNU_IFUNC) {
    return "it exports " SAGA_PLUGIN_ENTRY_SYMBOL " as a function" + std::string(kWants);
  }
  if (kind != STT_OBJECT || symbol->st_size < sizeof(void*)) {
    return "it exports " SAGA_PLUGIN_ENTRY_SYMBOL " as " +
           (kind == STT_OBJECT ? "an object of " + std::to_string(symbol->st_size) + " bytes"
                               : "an ELF symbol of type " + std::to_string(kind)) +
           std::string(kWants);
  }
  const void* target = *static_cast<const void* const*>(address);
  if (!target) return "it exports no " SAGA_PLUGIN_ENTRY_SYMBOL;
  link_map* library = nullptr;
  if (::dlinfo(handle, RTLD_DI_LINKMAP, &library) != 0 || !library ||
      !in_code_of(*library, target)) {
    return "its " SAGA_PLUGIN_ENTRY_SYMBOL " points outside the plugin's code" +
           std::string(kWants);
  }
  return std::nullopt;
}

// What a workflow can name in `uses:` and the documentation promises: lower-case ASCII letters,
// digits, '_' and '-' in dot-separated parts that each start with a letter.
bool is_step_type_name(std::string_view name) {
  bool part_start = true;
  for (char c : name) {
    const bool letter = c >= 'a' && c <= 'z';
    if (part_start) {
      if (!letter) return false;
      part_start = false;
    } else if (c == '.') {
      part_start = true;
    } else if (!letter && !(c >= '0' && c <= '9') && c != '_' && c != '-') {
      return false;
    }
  }
  return !part_start;
}

}  // namespace

PluginRegistry::FileStamp PluginRegistry::stamp_of(const struct stat& st) {
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
          static_cast<int64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec,
          static_cast<int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 + st.st_ctim.tv_nsec};
}

// The loader maps the file it opens, so writing into that file (cp over an installed plugin
// writes into the same inode) would change code under running steps: it loads a sealed memfd
// holding the file's bytes instead.
std::expected<const PluginRegistry::Library*, PluginRegistry::LoadFailure>
PluginRegistry::load_library(const std::string& path) {
  auto cannot = [&](const std::string& why) {
    return std::unexpected(LoadFailure{
        {ErrorCode::invalid_argument, "plugin " + path + ": cannot be loaded: " + why}, {}, {}});
  };
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.get() < 0) return cannot(std::strerror(errno));
  struct stat st {};
  if (::fstat(file.get(), &st) != 0) return cannot(errno_text("fstat"));
  if (!S_ISREG(st.st_mode)) return cannot("not a regular file");

  auto lib = std::make_unique<Library>();
  lib->copy_path = path;
  lib->copied_from = stamp_of(st);
  std::string name = fs::path(path).filename().string().substr(0, 200);
  unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  int fd = ::memfd_create(name.c_str(), flags | kMfdExec);
  if (fd < 0 && errno == EINVAL) fd = ::memfd_create(name.c_str(), flags);
  UniqueFd copy(fd);
  if (fd < 0 && (errno == EACCES || errno == EPERM)) {
    // Executable memfds are forbidden here (vm.memfd_noexec=2, a seccomp filter): the file is
    // loaded as it is.
    spdlog::warn(
        "plugin {}: loaded from the file itself ({}); replace it (install, mv) rather than write "
        "into it while sagad runs",
        path, errno_text("memfd_create"));
  } else if (fd < 0) {
    return cannot("no private copy to load: " + errno_text("memfd_create"));
  } else {
    std::array<char, 1 << 16> buffer;
    for (;;) {
      ssize_t n = ::read(file.get(), buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return cannot(errno_text("read"));
      if (n == 0) break;
      for (ssize_t done = 0; done < n;) {
        ssize_t w = ::write(copy.get(), buffer.data() + done, static_cast<size_t>(n - done));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return cannot("no private copy to load: " + errno_text("write"));
        done += w;
      }
    }
    if (::fcntl(copy.get(), F_ADD_SEALS,
                F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
      return cannot("no private copy to load: " + errno_text("sealing it"));
    }
    lib->copy_path = "/proc/self/fd/" + std::to_string(copy.get());
  }
  std::string threw;
  try {
    lib->library.load(lib->copy_path,
                      boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const boost::dll::fs::system_error& e) {
    // dlopen failed and undid what it had done.
    return std::unexpected(
        LoadFailure{{ErrorCode::invalid_argument,
                     "plugin " + path + ": " + load_failure(path, lib->copy_path, e)},
                    {},
                    {}});
  } catch (const std::exception& e) {
    threw = std::string("(") + e.what() + ")";
  } catch (...) {
    threw = "of unknown type";
  }
  if (!threw.empty()) {
    // Thrown by the library's own initialization, through the dynamic loader, which keeps the
    // library mapped but unfinished under the copy's path: that path, the copy's descriptor,
    // must never name another file, so the descriptor stays open for good. The loader's lock
    // stays held by this thread too, which nothing here can release.
    LoadFailure failure{
        {ErrorCode::invalid_argument,
         "plugin " + path + ": its initialization threw an exception " + threw +
             "; an exception thrown through the dynamic loader leaves it locked for sagad's "
             "other threads: fix or remove the file and restart sagad"},
        {},
        {}};
    failure.threw = threw;
    // The reference the check takes is kept: such a library is never unloaded.
    if (::dlopen(lib->copy_path.c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
      copy.release();
      failure.loaded_as = lib->copied_from;
    }
    return std::unexpected(std::move(failure));
  }
  lib->copy_fd = copy.release();
  libraries_.push_back(std::move(lib));
  return libraries_.back().get();
}

namespace {

// One attempt's state, shared by the host callbacks; lives on invoke()'s stack.
struct HostContext {
  const StepTypeInfo* type;
  const std::atomic<bool>* cancelled;
  const PluginLogFn* log;
  AttemptReply reply;
  bool has_result = false;
};

// The callbacks run inside plugin frames, which may be C: nothing may be thrown through them.
void host_set_result(void* ctx, uint32_t outcome, const char* data, size_t size) noexcept {
  auto* h = static_cast<HostContext*>(ctx);
  h->has_result = true;
  if (outcome > SAGA_OUTCOME_FAIL) {
    h->reply = {SAGA_OUTCOME_RETRY, "step type " + h->type->name + " reported outcome " +
                                        std::to_string(outcome) +
                                        ", which this sagad does not know"};
    return;
  }
  h->reply.outcome = static_cast<saga_outcome>(outcome);
  h->reply.data.assign(data ? data : "", data ? size : 0);
}

int host_cancelled(void* ctx) noexcept {
  return static_cast<HostContext*>(ctx)->cancelled->load(std::memory_order_acquire) ? 1 : 0;
}

void host_log(void* ctx, uint32_t level, const char* message, size_t size) noexcept {
  auto* h = static_cast<HostContext*>(ctx);
  if (!*h->log) return;
  try {
    (*h->log)(level, std::string_view(message ? message : "", message ? size : 0));
  } catch (...) {
    // Losing one log line is better than failing the step or unwinding through plugin frames.
  }
}

const saga_host_api kHostApi = {sizeof(saga_host_api), &host_set_result, &host_cancelled,
                                &host_log};

}  // namespace

Result<void> PluginRegistry::load_file(const std::string& path) {
  auto errors = load_new({path}, "");
  if (!errors.empty()) return std::unexpected(std::move(errors.front()));
  return {};
}

std::vector<Error> PluginRegistry::load_new(const std::vector<std::string>& paths,
                                            const std::string& dir) {
  std::vector<Error> errors;
  const std::map<std::string, TrialRefusal> refused =
      trial_ && !paths.empty() ? trial_(paths) : std::map<std::string, TrialRefusal>();
  for (const auto& f : paths) {
    auto it = refused.find(f);
    auto r = it == refused.end() ? load_and_record(f, dir) : refuse_untried(f, dir, it->second);
    if (!r) errors.push_back(std::move(r.error()));
  }
  return errors;
}

Result<void> PluginRegistry::refuse_untried(const std::string& path, const std::string& dir,
                                            const TrialRefusal& refusal) {
  // Nothing of it is loaded here; one to blame is tried again once it changes.
  Error error{ErrorCode::invalid_argument, "plugin " + path + ": " + refusal.why};
  struct stat st {};
  std::optional<FileStamp> stamp;
  if (refusal.sticky && ::stat(path.c_str(), &st) == 0) stamp = stamp_of(st);
  refused_[path] = {dir, error, stamp};
  return std::unexpected(std::move(error));
}

Result<void> PluginRegistry::load_and_record(const std::string& path, const std::string& dir) {
  auto library = load_library(path);
  if (!library) {
    refused_[path] = {dir, library.error().error, library.error().loaded_as};
    return std::unexpected(library.error().error);
  }
  auto added = add_plugin(path, **library);
  if (added) {
    refused_.erase(path);
  } else {
    refused_[path] = {dir, added.error(), (*library)->copied_from};
  }
  return added;
}

// The library stays loaded even when refused: unloading would run the plugin's destructors and
// unmap code that threads it started may still be running.
Result<void> PluginRegistry::add_plugin(const std::string& path, const Library& lib) {
  const boost::dll::shared_library& library = lib.library;
  const saga_plugin* plugin = nullptr;
  try {
    if (auto why = entry_symbol_problem(library.native())) {
      return refuse(
          ErrorCode::invalid_argument, path,
          "not a saga plugin (" + *why + "); build it with SAGA_PLUGIN from the saga SDK");
    }
    auto entry = boost::dll::import_alias<const saga_plugin*()>(library, SAGA_PLUGIN_ENTRY_SYMBOL);
    plugin = entry();
  } catch (const std::exception& e) {
    return refuse(ErrorCode::invalid_argument, path,
                  std::string("its entry point failed: ") + e.what());
  } catch (...) {
    return refuse(ErrorCode::invalid_argument, path,
                  "its entry point threw an exception of unknown type");
  }
  if (!plugin) return refuse(ErrorCode::invalid_argument, path, "its entry point returned null");

  // Only abi_major and abi_minor have a fixed place in every ABI; nothing else may be read from
  // a descriptor of another major.
  if (plugin->abi_major != SAGA_ABI_MAJOR) {
    return refuse(ErrorCode::failed_precondition, path,
                  "built for plugin ABI " + std::to_string(plugin->abi_major) + "." +
                      std::to_string(plugin->abi_minor) + ", this sagad speaks ABI " +
                      std::to_string(SAGA_ABI_MAJOR) + ".x; rebuild it against this SDK");
  }
  if (plugin->struct_size < SAGA_FIELD_END(saga_plugin, step_type_count)) {
    return refuse(ErrorCode::invalid_argument, path,
                  "its descriptor is " + std::to_string(plugin->struct_size) +
                      " bytes, too short for ABI " + std::to_string(SAGA_ABI_MAJOR) +
                      "; rebuild it against this SDK");
  }

  StridedArray<saga_step_type> c_types(plugin->step_types, plugin->step_type_count);
  if (auto bad = check_array(c_types, SAGA_FIELD_END(saga_step_type, run), "step type")) {
    return refuse(ErrorCode::invalid_argument, path, *bad);
  }
  std::vector<std::unique_ptr<StepTypeInfo>> types;
  for (size_t i = 0; i < c_types.size(); ++i) {
    const saga_step_type* t = c_types.at(i);
    auto info = std::make_unique<StepTypeInfo>();
    info->name = text(t->name);
    if (info->name.empty()) {
      return refuse(ErrorCode::invalid_argument, path,
                    "step type " + std::to_string(i) + " has no name");
    }
    if (!is_step_type_name(info->name)) {
      return refuse(ErrorCode::invalid_argument, path,
                    nlohmann::json(info->name)
                            .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                        " is not a step type name: one is lower-case letters, digits, '_' and "
                        "'-' in dot-separated parts that each start with a letter, such as "
                        "testing.noop");
    }
    if (!t->run) {
      return refuse(ErrorCode::invalid_argument, path,
                    "step type " + info->name + " has no run entry point");
    }
    info->description = text(t->description);
    info->file = path;
    info->accepts_any_params = t->accepts_any_params != 0;
    info->can_compensate =
        t->struct_size >= SAGA_FIELD_END(saga_step_type, compensate) && t->compensate;
    info->runs_inline = t->struct_size >= SAGA_FIELD_END(saga_step_type, flags) &&
                        (t->flags & SAGA_STEP_INLINE) != 0;
    info->entry = t;

    StridedArray<saga_param> c_params(t->params, t->param_count);
    if (auto bad = check_array(c_params, SAGA_FIELD_END(saga_param, required),
                               "step type " + info->name + ": parameter")) {
      return refuse(ErrorCode::invalid_argument, path, *bad);
    }
    for (size_t j = 0; j < c_params.size(); ++j) {
      const saga_param* p = c_params.at(j);
      ParamSpec spec;
      spec.name = text(p->name);
      auto where = "step type " + info->name + ": parameter " + spec.name;
      if (spec.name.empty()) {
        return refuse(
            ErrorCode::invalid_argument, path,
            "step type " + info->name + ": parameter " + std::to_string(j) + " has no name");
      }
      for (const auto& other : info->params) {
        if (other.name == spec.name) {
          return refuse(ErrorCode::invalid_argument, path, where + " is declared twice");
        }
      }
      // A newer minor may add parameter types; validating such a parameter as `any` is loose
      // but safe, since the plugin still checks what it receives. A plugin of this minor or an
      // older one has no such type: the number is a mistake.
      if (p->type > SAGA_PARAM_OBJECT && plugin->abi_minor <= SAGA_ABI_MINOR) {
        return refuse(ErrorCode::invalid_argument, path,
                      where + " has type " + std::to_string(p->type) + ", which plugin ABI " +
                          std::to_string(SAGA_ABI_MAJOR) + "." + std::to_string(plugin->abi_minor) +
                          " does not have; declare one of saga_param_type");
      }
      spec.type =
          p->type <= SAGA_PARAM_OBJECT ? static_cast<saga_param_type>(p->type) : SAGA_PARAM_ANY;
      spec.required = p->required != 0;
      if (p->struct_size >= SAGA_FIELD_END(saga_param, default_json) && p->default_json.size > 0) {
        spec.default_value = nlohmann::json::parse(text(p->default_json), nullptr, false);
        if (spec.default_value.is_discarded()) {
          return refuse(ErrorCode::invalid_argument, path,
                        where + " has a default that is not JSON: " + text(p->default_json));
        }
        if (spec.required) {
          return refuse(ErrorCode::invalid_argument, path,
                        where +
                            " is required and has a default, which it would never use; "
                            "drop one of them");
        }
        if (auto why = param_type_mismatch(param_type_name(spec.type), spec.default_value)) {
          return refuse(
              ErrorCode::invalid_argument, path,
              where + " has the default " + text(p->default_json) + ", but must be " + *why);
        }
      }
      if (p->struct_size >= SAGA_FIELD_END(saga_param, description)) {
        spec.description = text(p->description);
      }
      info->has_defaults = info->has_defaults || !spec.default_value.is_null();
      info->params.push_back(std::move(spec));
    }

    if (const StepTypeInfo* other = find(info->name)) {
      return refuse(ErrorCode::already_exists, path,
                    "step type " + info->name + " is already provided by plugin " + other->file +
                        "; a step type name must be unique across plugins");
    }
    for (const auto& mine : types) {
      if (mine->name == info->name) {
        return refuse(ErrorCode::invalid_argument, path,
                      "step type " + info->name + " is declared twice");
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
    Error error{ErrorCode::not_found,
                "plugin directory " + dir + " cannot be read: " + ec.message()};
    refused_[dir] = {dir, error, std::nullopt};
    errors.push_back(std::move(error));
    return errors;
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> to_load;
  for (const auto& f : files) {
    // A reload picks up new files; plugins already loaded stay as they are.
    bool loaded = std::any_of(plugins_.begin(), plugins_.end(),
                              [&](const PluginInfo& p) { return p.file == f; });
    if (loaded) continue;
    // A refused file whose code stayed loaded would be refused again, at the cost of another
    // copy held for good: it is retried once it changes. A file that could not be loaded at all
    // holds nothing and is retried every time (a library it needs may have been installed).
    if (auto was = refused_.find(f); was != refused_.end() && was->second.loaded_as) {
      struct stat st {};
      if (::stat(f.c_str(), &st) == 0 && stamp_of(st) == *was->second.loaded_as) {
        was->second.dir = dir;
        errors.push_back(was->second.error);
        continue;
      }
    }
    to_load.push_back(f);
  }
  for (auto& error : load_new(to_load, dir)) errors.push_back(std::move(error));
  std::erase_if(refused_, [&](const auto& entry) {
    return entry.second.dir == dir && !std::binary_search(files.begin(), files.end(), entry.first);
  });
  return errors;
}

std::vector<PluginLoadError> PluginRegistry::errors() const {
  std::vector<PluginLoadError> out;
  out.reserve(refused_.size());
  for (const auto& [file, refused] : refused_) out.push_back({file, refused.error.message});
  return out;
}

const StepTypeInfo* PluginRegistry::find(std::string_view step_type) const {
  for (const auto& t : types_) {
    if (t->name == step_type) return t.get();
  }
  return nullptr;
}

std::vector<const StepTypeInfo*> PluginRegistry::step_types() const {
  std::vector<const StepTypeInfo*> out;
  out.reserve(types_.size());
  for (const auto& t : types_) out.push_back(t.get());
  return out;
}

void PluginRegistry::trial_main(const std::vector<std::string>& paths) {
  auto report = [](const std::string& line) {
    const std::string text = line + "\n";
    (void)!::write(kTrialReportFd, text.data(), text.size());
  };
  PluginRegistry registry;
  report("ready");
  for (const std::string& path : paths) {
    auto library = registry.load_library(path);
    if (!library && !library.error().threw.empty()) {
      // This process's loader is locked now: say what was thrown and leave at once.
      report("threw " + library.error().threw);
      ::_exit(kTrialThrew);
    }
    // Its entry point and descriptor too: a crash there ends this process, not sagad.
    if (library) (void)registry.add_plugin(path, **library);
    report("ok");
  }
  ::_exit(0);
}

void fill_param_defaults(const StepTypeInfo& type, nlohmann::json& params) {
  if (!type.has_defaults || !(params.is_object() || params.is_null())) return;
  for (const auto& p : type.params) {
    if (p.default_value.is_null()) continue;
    auto& value = params[p.name];  // makes a null `params` an object
    if (value.is_null()) value = p.default_value;
  }
}

AttemptReply PluginRegistry::invoke(const StepTypeInfo& type, const AttemptRequest& r,
                                    const std::atomic<bool>& cancelled, const PluginLogFn& log) {
  if (r.phase == SAGA_PHASE_COMPENSATE && !type.can_compensate) {
    return {SAGA_OUTCOME_FAIL, "step type " + type.name + " cannot compensate"};
  }
  HostContext ctx{&type, &cancelled, &log, {}, false};
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
  try {
    fn(type.entry->type_ctx, &a);
  } catch (...) {
    // The SDK stops exceptions inside the plugin; a plugin written without it may not.
    return {SAGA_OUTCOME_RETRY, "step type " + type.name + " let an exception escape its plugin"};
  }
  if (!ctx.has_result) {
    return {SAGA_OUTCOME_RETRY, "step type " + type.name + " returned no result"};
  }
  return std::move(ctx.reply);
}

}  // namespace saga
