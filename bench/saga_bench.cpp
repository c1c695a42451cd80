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
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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
              client->call("start", {{"workflow", workflow}, {"input", input}, {"wait", true}});
          double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
          std::string state =
              r ? (*r).value("instance", json::object()).value("state", std::string()) : "";
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
  auto t0 = Clock::now();
  run(count, &latencies);
  double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  long rss = pid > 0 ? rss_kib(pid) : -1;
  std::sort(latencies.begin(), latencies.end());

  json stats = json::object();
  if (auto s = probe->call("stats")) stats = *s;
  json journal = stats.value("journal", json::object());

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
      {"journal_avg_batch", journal.value("avg_batch", 0.0)},
      {"journal_commit_p50_ms", journal.value("commit_ms", json::object()).value("p50", 0.0)}};
  if (as_json) {
    std::cout << result.dump() << "\n";
  } else {
    std::cout << fmt::format(
        "{} C={} N={}: {:.1f} instances/s, p50 {:.2f} ms, p90 {:.2f} ms, p99 {:.2f} ms, errors {}, "
        "sagad RSS {:.1f} MiB, journal avg batch {:.1f}\n",
        workflow, concurrency, count, result["instances_per_s"].get<double>(),
        result["p50_ms"].get<double>(), result["p90_ms"].get<double>(),
        result["p99_ms"].get<double>(), errors.load(), static_cast<double>(rss) / 1024.0,
        result["journal_avg_batch"].get<double>());
  }
  if (errors > 0) {
    std::cerr << "saga-bench: " << errors << " instances did not end " << expect
              << " (first: " << first_error << ")\n";
    return 1;
  }
  return 0;
}
