// sagad: flags and configuration, logging, then the daemon.
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include "daemon.hpp"
#include "engine/escape.hpp"
#include "plugin_host/plugin_registry.hpp"

#ifndef SAGA_PLUGIN_SUBDIR
#define SAGA_PLUGIN_SUBDIR "lib/saga/plugins"
#endif

namespace {

namespace fs = std::filesystem;

constexpr const char* kDefaultConfig = "/etc/saga/sagad.yaml";

// Every option is both a flag (--NAME) and a key of the config file (NAME).
constexpr const char* kOptions[] = {"workflows", "plugins",    "state",      "socket",
                                    "workers",   "durability", "retention",  "secrets",
                                    "grace",     "log-level",  "min-free-mb"};
const std::set<std::string> kLogLevels = {"trace", "debug", "info", "warn", "error", "critical"};

struct Settings {
  saga::Config config;
  std::string log_level = "info";
};

// The installed plugin directory lies next to the binary, so one build serves any prefix:
// PREFIX/bin/sagad loads PREFIX/lib/saga/plugins. Run from a build tree (build/bin/sagad), it is
// build/plugins.
std::string default_plugin_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "/usr/" SAGA_PLUGIN_SUBDIR;
  fs::path prefix = exe.parent_path().parent_path();
  fs::path installed = prefix / SAGA_PLUGIN_SUBDIR;
  if (!fs::is_directory(installed, ec) && fs::exists(prefix / "CMakeCache.txt", ec) &&
      fs::is_directory(prefix / "plugins", ec)) {
    return (prefix / "plugins").string();
  }
  return installed.string();
}

// journald reads a "<N>" syslog priority at the start of each stderr line.
class SyslogPriority : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr const char* kPriority[] = {"<7>", "<7>", "<6>", "<4>", "<3>", "<2>", "<6>"};
    const char* p = kPriority[static_cast<int>(msg.level)];
    dest.append(p, p + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SyslogPriority>();
  }
};

// The message on one line: a line break or another control character in it (from a plugin's
// error text, a file name) would start a line that journald reads as another entry, or reach a
// terminal raw. They are escaped (engine/escape.hpp).
class OneLine : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    saga::append_escaped(std::string_view(msg.payload.data(), msg.payload.size()), dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<OneLine>();
  }
};

// systemd sets JOURNAL_STREAM=DEVICE:INODE of the stream it connected; stderr is that stream
// unless someone redirected it (sagad run by hand from a unit's shell, say).
bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (!stream) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("sagad");
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<OneLine>('&');
  if (stderr_is_journal()) {
    formatter->add_flag<SyslogPriority>('*').set_pattern("%*%&");
  } else {
    formatter->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %&");
  }
  logger->set_formatter(std::move(formatter));
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

std::string position(const std::string& path, const YAML::Mark& mark) {
  return fmt::format("{}:{}:{}: ", path, mark.line + 1, mark.column + 1);
}

// Checks one option's value and stores it into `s`; returns the sentence of what is wrong.
// Shared by the config file and the flags, so both accept exactly the same values.
std::optional<std::string> apply_option(const std::string& key,
                                        const std::vector<std::string>& values, Settings& s) {
  auto& c = s.config;
  if (values.empty()) return key + " needs a value";
  for (const auto& v : values) {
    // An empty secrets is "no secrets directory", as --print-config shows the default.
    if (v.empty() && key != "secrets") return key + " needs a non-empty value";
  }
  const std::string& v = values.front();
  if (key == "plugins") {
    c.plugin_dirs = values;
    return std::nullopt;
  }
  if (values.size() > 1) return key + " takes one value, not a list";
  if (key == "workflows") c.workflows_dir = v;
  if (key == "state") c.state_dir = v;
  if (key == "socket") c.socket_path = v;
  if (key == "secrets") c.secrets_dir = v;
  if (key == "workers") {
    uint32_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || n < 1 || n > 1024) {
      return "workers is a whole number from 1 to 1024, not \"" + v + "\"";
    }
    c.workers = n;
  }
  if (key == "min-free-mb") {
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || n > (uint64_t{1} << 40)) {
      return "min-free-mb is a whole number of MiB, not \"" + v + "\"";
    }
    c.min_free_mb = n;
  }
  if (key == "durability") {
    if (v != "sync" && v != "async") return "durability is sync or async, not \"" + v + "\"";
    c.durability = v == "sync" ? saga::Durability::sync : saga::Durability::async;
  }
  if (key == "retention" || key == "grace") {
    auto d = saga::parse_duration(v);
    if (!d) {
      return key + " is a duration such as 30d, 10s or 1h30m (at most 36500d), not \"" + v + "\"";
    }
    // Ended instances are answered from the journal (inspect, start --id that finds them): a
    // retention of nothing would forget an instance as it ends.
    if (key == "retention" && d->count() == 0) {
      return "retention is how long ended instances are kept, and must be longer than 0s";
    }
    (key == "retention" ? c.retention : c.grace) = *d;
  }
  if (key == "log-level") {
    if (!kLogLevels.contains(v)) {
      return "log-level is one of trace, debug, info, warn, error, critical, not \"" + v + "\"";
    }
    s.log_level = v;
  }
  return std::nullopt;
}

// Reads the YAML config file into `s`. Every key is checked, also those a flag overrides: a
// broken file is reported even when today's flags happen to hide the broken line.
std::optional<std::string> read_config_file(const std::string& path, Settings& s) {
  YAML::Node root;
  std::error_code ec;
  if (fs::is_directory(path, ec)) return "config file " + path + " is a directory";
  try {
    std::vector<YAML::Node> documents = YAML::LoadAllFromFile(path);
    // A trailing "---" (generated YAML often ends so) starts nothing.
    while (documents.size() > 1 && documents.back().IsNull()) documents.pop_back();
    if (documents.size() > 1) {
      return position(path, documents[1].Mark()) +
             "a second YAML document starts here, and the config file holds one; merge the two "
             "or remove the other";
    }
    if (!documents.empty()) root = documents.front();
  } catch (const YAML::BadFile&) {
    return "cannot read config file " + path;
  } catch (const YAML::Exception& e) {
    return position(path, e.mark) + e.msg;
  } catch (const std::exception& e) {
    return "cannot read config file " + path + ": " + e.what();
  }
  if (root.IsNull()) return std::nullopt;
  if (!root.IsMap()) {
    return position(path, root.Mark()) + "the config file must be a mapping of option: value";
  }
  std::map<std::string, YAML::Mark> seen;
  for (const auto& kv : root) {
    std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
    std::string where = position(path, kv.first.Mark());
    if (std::find(std::begin(kOptions), std::end(kOptions), key) == std::end(kOptions)) {
      return where + "unknown option \"" + key + "\"; options are " +
             fmt::format("{}", fmt::join(kOptions, ", "));
    }
    if (auto [it, fresh] = seen.emplace(key, kv.first.Mark()); !fresh) {
      return where + key + " is given twice (first on line " + std::to_string(it->second.line + 1) +
             ")";
    }
    const YAML::Node& v = kv.second;
    std::vector<std::string> values;
    if (v.IsScalar()) {
      values.push_back(v.Scalar());
    } else if (v.IsSequence() && key == "plugins") {
      for (const auto& item : v) {
        if (!item.IsScalar()) return position(path, item.Mark()) + "plugins is a list of paths";
        values.push_back(item.Scalar());
      }
    } else if (!v.IsNull()) {
      return position(path, v.Mark()) + key +
             (key == "plugins" ? " is a path or a list of paths" : " takes one plain value");
    }
    if (auto error = apply_option(key, values, s)) {
      return position(path, v.IsNull() ? kv.first.Mark() : v.Mark()) + *error;
    }
  }
  return std::nullopt;
}

std::string quote_path(const std::string& p) {
  return p.empty() ? "\"\"" : p;
}

// The effective configuration, in the config file's own format.
void print_config(const Settings& s) {
  const auto& c = s.config;
  std::cout << "workflows: " << quote_path(c.workflows_dir) << "\nplugins:";
  if (c.plugin_dirs.empty()) std::cout << " []";
  std::cout << "\n";
  for (const auto& d : c.plugin_dirs) std::cout << "  - " << d << "\n";
  std::cout << "state: " << c.state_dir << "\nsocket: " << c.socket_path
            << "\nworkers: " << c.workers
            << "\ndurability: " << (c.durability == saga::Durability::sync ? "sync" : "async")
            << "\nretention: " << saga::format_duration(c.retention)
            << "\nsecrets: " << quote_path(c.secrets_dir)
            << "\ngrace: " << saga::format_duration(c.grace) << "\nmin-free-mb: " << c.min_free_mb
            << "\nlog-level: " << s.log_level << "\n";
}

}  // namespace

// Started with 0, 1 or 2 closed, sagad would hand those numbers to the first files it opens
// (the journal's, a pipe to a step's program), where whatever writes to stdout or stderr would
// then land: they are kept taken by /dev/null, as daemons do.
void reserve_standard_fds() {
  for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    if (::open("/dev/null", O_RDWR) < 0) std::exit(1);  // takes the lowest free number: fd
  }
}

int main(int argc, char** argv) {
  // sagad's own child, loading new plugin files before sagad does (plugin_trial.hpp).
  if (argc >= 2 && std::string_view(argv[1]) == "--try-plugins") {
    saga::PluginRegistry::trial_main(std::vector<std::string>(argv + 2, argv + argc));
  }
  reserve_standard_fds();
  Settings settings;
  settings.config.plugin_dirs = {default_plugin_dir()};
  const saga::Config& defaults = settings.config;

  CLI::App app{"sagad: the saga durable workflow daemon"};
  app.footer(fmt::format(
      "Configuration: every option above is also a key of the YAML config file, written without\n"
      "the dashes (workers: 32, plugins: [DIR, DIR], log-level: debug). The file is {} unless\n"
      "--config names another; a missing default file is not an error. Flags win over the file.\n"
      "Unknown keys and bad values are errors reported as FILE:LINE:COLUMN.\n\n"
      "Signals: SIGTERM and SIGINT drain (stop accepting work, let running attempts finish for\n"
      "up to --grace, exit 0); SIGHUP reloads the workflows and loads new plugin files.",
      kDefaultConfig));
  std::string config_file;
  bool print = false;
  std::map<std::string, std::vector<std::string>> flags;
  auto add = [&](const char* name, const std::string& help, const std::string& def) {
    auto* opt = app.add_option(std::string("--") + name, flags[name], help);
    if (!def.empty()) opt->default_str(def);
    if (std::string(name) != "plugins") opt->expected(1);
    return opt;
  };
  app.add_option("--config", config_file, "YAML config file")->default_str(kDefaultConfig);
  add("workflows", "directory of workflow YAML files, watched for changes", defaults.workflows_dir);
  add("plugins", "directory of step plugins (*.so); repeatable", defaults.plugin_dirs.front())
      ->take_all();
  add("state", "state directory: the journal and the lock; created when missing",
      defaults.state_dir);
  add("socket", "control socket path (mode 0660)", defaults.socket_path);
  add("workers", "worker threads for step attempts (1-1024); a blocking step holds one",
      std::to_string(defaults.workers));
  add("durability",
      "sync (fsync every commit) or async (survives a crash of sagad, not of the "
      "machine)",
      "sync");
  add("retention", "how long ended instances are kept in the journal",
      saga::format_duration(defaults.retention));
  add("secrets", "directory of secret files for ${{ secrets.NAME }}",
      "$CREDENTIALS_DIRECTORY (systemd LoadCredential=)");
  add("grace", "how long a shutdown waits for running attempts",
      saga::format_duration(defaults.grace));
  add("min-free-mb",
      "free space (MiB) kept on the journal's file system: below it the journal stops and "
      "sagad takes no new work, before the disk is full",
      std::to_string(defaults.min_free_mb));
  add("log-level", "trace, debug, info, warn, error or critical", settings.log_level);
  app.add_flag("--print-config", print,
               "print the configuration that the file and the flags make, then exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::cerr << "sagad: " << e.what() << "; sagad --help lists the options\n";
    return 2;
  }

  std::string path = config_file.empty() ? kDefaultConfig : config_file;
  if (!config_file.empty() || fs::exists(path)) {
    if (auto error = read_config_file(path, settings)) {
      std::cerr << "sagad: " << *error << "\n";
      return 2;
    }
  }
  for (const char* name : kOptions) {
    if (app.count(std::string("--") + name) == 0) continue;
    if (auto error = apply_option(name, flags[name], settings)) {
      std::cerr << "sagad: --" << *error << "\n";
      return 2;
    }
  }
  if (print) {
    print_config(settings);
    return 0;
  }
  setup_logging(settings.log_level);
  return saga::run_daemon(settings.config);
}
