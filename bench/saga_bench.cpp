// saga-bench: a closed-loop load generator that speaks JSON-RPC to sagad's socket.
//
// C clients, each on its own connection, take the next index, start one instance with
// `wait: true` and record the latency from the start call to the result, until N instances
// have been started (the same loop as ../shared/peers/common/bench.mjs).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "control/client.hpp"

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

double percentile(std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest rank, as the peers' bench.mjs computes it.
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

long rss_kib(int64_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// CPU time of sagad's threads by role, in clock ticks: the loop thread keeps the process's name,
// the others are named by sagad ("saga-journal", "saga-worker") or by RocksDB ("rocksdb:...").
std::map<std::string, uint64_t> cpu_ticks_by_role(int64_t pid) {
  std::map<std::string, uint64_t> ticks;
  std::error_code ec;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::ifstream in(task.path() / "stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto open = stat.find('('), close = stat.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::string comm = stat.substr(open + 1, close - open - 1);
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    uint64_t utime = 0, stime = 0;
    // Fields 3..13 precede utime (14) and stime (15).
    for (int i = 3; i <= 13 && rest >> field; ++i) {
    }
    rest >> utime >> stime;
    std::string role = comm == "saga-journal"                          ? "journal"
                       : comm == "saga-worker"                         ? "workers"
                       : comm.starts_with("rocksdb:")                  ? "rocksdb"
                       : task.path().filename() == std::to_string(pid) ? "loop"
                                                                       : "other";
    ticks[role] += utime + stime;
  }
  return ticks;
}

std::string cpu_breakdown(const json& cpu_us) {
  std::string text = fmt::format("{:.0f}", cpu_us.value("total", 0.0));
  std::string parts;
  for (const auto& [role, us] : cpu_us.items()) {
    if (role == "total") continue;
    parts += fmt::format("{}{} {:.0f}", parts.empty() ? "" : ", ", role, us.get<double>());
  }
  return parts.empty() ? text : text + " (" + parts + ")";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"saga-bench: closed-loop load against sagad"};
  std::string socket = "/run/saga/sagad.sock";
  std::string workflow;
  std::string input_text = "{}";
  std::string expect = "completed";
  size_t count = 1000;
  size_t concurrency = 32;
  size_t warmup = 0;
  bool as_json = false;
  app.add_option("--socket", socket, "sagad's control socket")->capture_default_str();
  app.add_option("--workflow", workflow, "workflow to start")->required();
  app.add_option("--count", count, "instances to start (measured)")->capture_default_str();
  app.add_option("--concurrency", concurrency, "concurrent clients")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  app.add_option("--warmup", warmup, "instances started first and not measured");
  app.add_option("--input", input_text, "instance input (a JSON object)");
  app.add_option("--expect", expect, "the state every instance must end in")->capture_default_str();
  app.add_flag("--json", as_json, "print one JSON object");
  bool no_wait = false;
  app.add_flag("--no-wait", no_wait,
               "start the instances without waiting for them to end (to build up instances in "
               "flight); latency is then that of the start call");
  CLI11_PARSE(app, argc, argv);

  json input = json::parse(input_text, nullptr, false);
  if (input.is_discarded() || !input.is_object()) {
    std::cerr << "saga-bench: --input must be a JSON object\n";
    return 2;
  }

  auto probe = saga::rpc::Client::connect(socket);
  if (!probe) {
    std::cerr << "saga-bench: " << probe.error().message << "\n";
    return 3;
  }
  auto ping = probe->call("ping");
  if (!ping) {
    std::cerr << "saga-bench: ping: " << ping.error().message << "\n";
    return 3;
  }
  const int64_t pid = (*ping).value("pid", int64_t{0});

  std::atomic<size_t> errors{0};
  std::string first_error;
  std::mutex mu;
  auto run = [&](size_t total, std::vector<double>* latencies) {
    std::atomic<size_t> next{0};
    std::vector<std::thread> clients;
    for (size_t c = 0; c < std::min(concurrency, total); ++c) {
      clients.emplace_back([&] {
        auto client = saga::rpc::Client::connect(socket);
        if (!client) {
          errors += 1;
          return;
        }
        std::vector<double> mine;
        while (next.fetch_add(1) < total) {
          auto t0 = Clock::now();
          auto r =
              client->call("start", {{"workflow", workflow}, {"input", input}, {"wait", !no_wait}});
          double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
          std::string state =
              r ? (*r).value("instance", json::object()).value("state", std::string()) : "";
          if (no_wait && r) state = expect;
          if (!r || state != expect) {
            errors += 1;
            std::lock_guard lock(mu);
            if (first_error.empty()) {
              first_error = r ? "an instance ended " + state : r.error().message;
            }
            if (!r && r.error().kind == saga::rpc::ClientError::Kind::transport) return;
            continue;
          }
          mine.push_back(ms);
        }
        if (latencies) {
          std::lock_guard lock(mu);
          latencies->insert(latencies->end(), mine.begin(), mine.end());
        }
      });
    }
    for (auto& t : clients) t.join();
  };

  if (warmup > 0) run(warmup, nullptr);
  errors = 0;
  std::vector<double> latencies;
  latencies.reserve(count);
  auto journal_of = [&probe]() {
    auto s = probe->call("stats");
    return s ? (*s).value("journal", json::object()) : json::object();
  };
  const json journal_before = journal_of();
  auto cpu_before = pid > 0 ? cpu_ticks_by_role(pid) : std::map<std::string, uint64_t>{};
  auto t0 = Clock::now();
  run(count, &latencies);
  double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  auto cpu_after = pid > 0 ? cpu_ticks_by_role(pid) : std::map<std::string, uint64_t>{};
  // sagad's CPU per measured instance, in microseconds, by thread role.
  json cpu_us = json::object();
  const double us_per_tick = 1e6 / static_cast<double>(::sysconf(_SC_CLK_TCK));
  double cpu_total = 0;
  for (const auto& [role, after] : cpu_after) {
    auto it = cpu_before.find(role);
    double us = static_cast<double>(after - (it == cpu_before.end() ? 0 : it->second)) *
                us_per_tick / static_cast<double>(std::max<size_t>(count, 1));
    cpu_us[role] = us;
    cpu_total += us;
  }
  cpu_us["total"] = cpu_total;
  long rss = pid > 0 ? rss_kib(pid) : -1;
  std::sort(latencies.begin(), latencies.end());

  const json journal = journal_of();
  // Transitions per commit during the measured run (the daemon's own figure is since it started).
  const double commits = journal.value("commits", 0.0) - journal_before.value("commits", 0.0);
  const double writes = journal.value("writes", 0.0) - journal_before.value("writes", 0.0);
  const double run_batch = commits > 0 ? writes / commits : 0.0;

  json result = {
      {"workflow", workflow},
      {"count", count},
      {"concurrency", concurrency},
      {"errors", errors.load()},
      {"instances_per_s", static_cast<double>(latencies.size()) / seconds},
      {"p50_ms", percentile(latencies, 50)},
      {"p90_ms", percentile(latencies, 90)},
      {"p99_ms", percentile(latencies, 99)},
      {"sagad_rss_kib", rss},
      {"journal_avg_batch", run_batch},
      {"journal_commit_p50_ms", journal.value("commit_ms", json::object()).value("p50", 0.0)},
      {"sagad_cpu_us_per_instance", cpu_us}};
  if (as_json) {
    std::cout << result.dump() << "\n";
  } else {
    std::cout << fmt::format(
        "{} C={} N={}: {:.1f} instances/s, p50 {:.2f} ms, p90 {:.2f} ms, p99 {:.2f} ms, errors {}, "
        "sagad RSS {:.1f} MiB, journal avg batch {:.1f}, sagad CPU per instance {} us\n",
        workflow, concurrency, count, result["instances_per_s"].get<double>(),
        result["p50_ms"].get<double>(), result["p90_ms"].get<double>(),
        result["p99_ms"].get<double>(), errors.load(), static_cast<double>(rss) / 1024.0,
        result["journal_avg_batch"].get<double>(), cpu_breakdown(cpu_us));
  }
  if (errors > 0) {
    std::cerr << "saga-bench: " << errors << " instances did not end " << expect
              << " (first: " << first_error << ")\n";
    return 1;
  }
  return 0;
}
