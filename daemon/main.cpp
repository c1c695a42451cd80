// sagad: flags and configuration, logging, then the daemon.
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>

#include "daemon.hpp"

namespace {

constexpr const char* kDefaultConfig = "/etc/saga/sagad.yaml";

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

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("sagad");
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (std::getenv("JOURNAL_STREAM")) {
    formatter->add_flag<SyslogPriority>('*').set_pattern("%*%v");
  } else {
    formatter->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  }
  logger->set_formatter(std::move(formatter));
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
}

// Reads the YAML config file into `config`; keys are the long flag names.
bool read_config_file(const std::string& path, saga::Config& config, std::string& log_level,
                      const std::set<std::string>& from_flags, std::string& error) {
  static const std::set<std::string> kKeys = {"workflows", "plugins",    "state",      "socket",
                                              "workers",   "durability", "retention",  "secrets",
                                              "log-level", "grace",      "min-free-mb"};
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    error = "cannot read config file " + path;
    return false;
  } catch (const YAML::Exception& e) {
    error = path + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
            ": " + e.msg;
    return false;
  }
  if (root.IsNull()) return true;
  if (!root.IsMap()) {
    error = path + ":1:1: the config file must be a mapping of option: value";
    return false;
  }
  for (const auto& kv : root) {
    auto key = kv.first.as<std::string>();
    auto where = path + ":" + std::to_string(kv.first.Mark().line + 1) + ":" +
                 std::to_string(kv.first.Mark().column + 1) + ": ";
    if (!kKeys.contains(key)) {
      error = where + "unknown option " + key +
              "; options are workflows, plugins, state, socket, workers, durability, retention, "
              "secrets, log-level, grace, min-free-mb";
      return false;
    }
    if (from_flags.contains(key)) continue;
    try {
      const YAML::Node& v = kv.second;
      if (key == "workflows") config.workflows_dir = v.as<std::string>();
      if (key == "plugins") {
        config.plugin_dirs.clear();
        if (v.IsSequence()) {
          for (const auto& d : v) config.plugin_dirs.push_back(d.as<std::string>());
        } else {
          config.plugin_dirs.push_back(v.as<std::string>());
        }
      }
      if (key == "state") config.state_dir = v.as<std::string>();
      if (key == "socket") config.socket_path = v.as<std::string>();
      if (key == "workers") config.workers = v.as<uint32_t>();
      if (key == "min-free-mb") config.min_free_mb = v.as<uint64_t>();
      if (key == "secrets") config.secrets_dir = v.as<std::string>();
      if (key == "log-level") log_level = v.as<std::string>();
      if (key == "durability" || key == "retention" || key == "grace") {
        auto text = v.as<std::string>();
        if (key == "durability") {
          if (text != "sync" && text != "async")
            throw YAML::Exception(v.Mark(), "durability is sync or async");
          config.durability = text == "sync" ? saga::Durability::sync : saga::Durability::async;
        } else {
          auto d = saga::parse_duration(text);
          if (!d) throw YAML::Exception(v.Mark(), "bad duration " + text + " (e.g. 30d, 10s)");
          (key == "retention" ? config.retention : config.grace) = *d;
        }
      }
    } catch (const YAML::Exception& e) {
      error = where + "bad value for " + key + ": " + e.msg;
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  saga::Config config;
  CLI::App app{"sagad: the saga workflow daemon"};
  std::string config_file;
  std::string log_level = "info";
  std::string durability = "sync";
  std::string retention = "30d";
  std::string grace = "10s";
  std::vector<std::string> plugin_dirs;
  app.add_option("--config", config_file, "YAML config file (default /etc/saga/sagad.yaml)");
  app.add_option("--workflows", config.workflows_dir, "directory of workflow YAML files")
      ->capture_default_str();
  app.add_option("--plugins", plugin_dirs, "directory of step plugins (repeatable)");
  app.add_option("--state", config.state_dir, "state directory (the journal)")
      ->capture_default_str();
  app.add_option("--socket", config.socket_path, "control socket path")->capture_default_str();
  app.add_option("--workers", config.workers, "worker threads for step attempts")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--durability", durability, "sync (fsync per commit) or async")
      ->check(CLI::IsMember({"sync", "async"}))
      ->capture_default_str();
  app.add_option("--retention", retention, "how long terminal instances are kept")
      ->capture_default_str();
  app.add_option("--secrets", config.secrets_dir,
                 "directory of secret files (default $CREDENTIALS_DIRECTORY)");
  app.add_option("--grace", grace, "how long a shutdown waits for running attempts")
      ->capture_default_str();
  app.add_option("--min-free-mb", config.min_free_mb,
                 "free space (MiB) kept on the journal's file system: below it sagad stops "
                 "taking work, before the disk is full")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::set<std::string> from_flags;
  for (const char* name : {"workflows", "plugins", "state", "socket", "workers", "durability",
                           "retention", "secrets", "log-level", "grace", "min-free-mb"}) {
    if (app.count(std::string("--") + name) > 0) from_flags.insert(name);
  }
  std::string path = config_file.empty() ? kDefaultConfig : config_file;
  if (!config_file.empty() || std::filesystem::exists(path)) {
    std::string error;
    if (!read_config_file(path, config, log_level, from_flags, error)) {
      std::cerr << "sagad: " << error << "\n";
      return 2;
    }
  }
  if (from_flags.contains("plugins")) config.plugin_dirs = plugin_dirs;
  if (from_flags.contains("durability")) {
    config.durability = durability == "sync" ? saga::Durability::sync : saga::Durability::async;
  }
  for (auto [flag, text, target] : {std::tuple{"retention", &retention, &config.retention},
                                    std::tuple{"grace", &grace, &config.grace}}) {
    if (!from_flags.contains(flag)) continue;
    auto d = saga::parse_duration(*text);
    if (!d) {
      std::cerr << "sagad: --" << flag << " " << *text << " is not a duration (e.g. 30d, 10s)\n";
      return 2;
    }
    *target = *d;
  }
  setup_logging(log_level);
  return saga::run_daemon(config);
}
