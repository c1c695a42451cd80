#include "format.hpp"

#include <catch2/catch.hpp>
#include <sstream>

using namespace saga;
using namespace saga::ctl;

namespace {

TimePoint at(int64_t unix_ms) {
  return from_unix_ms(unix_ms);
}

}  // namespace

TEST_CASE("relative_time names the largest whole unit, past and future") {
  const TimePoint now = at(1'800'000'000'000);
  CHECK(relative_time(now, now) == "now");
  CHECK(relative_time(now - Millis(999), now) == "now");
  CHECK(relative_time(now + Millis(999), now) == "now");
  CHECK(relative_time(now - Millis(3'000), now) == "3s ago");
  CHECK(relative_time(now - Millis(59'999), now) == "59s ago");
  CHECK(relative_time(now - Millis(60'000), now) == "1m ago");
  CHECK(relative_time(now + Millis(125'000), now) == "in 2m");
  CHECK(relative_time(now - Millis(3'600'000), now) == "1h ago");
  CHECK(relative_time(now - Millis(47LL * 3'600'000), now) == "47h ago");
  CHECK(relative_time(now - Millis(49LL * 3'600'000), now) == "2d ago");
  CHECK(relative_time(now + Millis(10LL * 86'400'000), now) == "in 10d");
}

TEST_CASE("relative_time of a daemon timestamp") {
  const TimePoint now = *parse_rfc3339("2026-11-23T10:00:05.000Z");
  CHECK(relative_time(nlohmann::json("2026-11-23T10:00:00.000Z"), now) == "5s ago");
  CHECK(relative_time(nlohmann::json("2026-11-23T10:02:05.500Z"), now) == "in 2m");
  CHECK(relative_time(nlohmann::json(), now) == "-");
  CHECK(relative_time(nlohmann::json("yesterday"), now) == "-");
}

TEST_CASE("human_duration") {
  CHECK(human_duration(0) == "0ms");
  CHECK(human_duration(850) == "850ms");
  CHECK(human_duration(1500) == "1.5s");
  CHECK(human_duration(12'300) == "12s");
  CHECK(human_duration(123'000) == "2m3s");
  CHECK(human_duration(3'720'000) == "1h2m");
  CHECK(human_duration(90'000'000) == "1d1h");
  CHECK(human_duration(-1) == "-");
}

TEST_CASE("colour only on a terminal without NO_COLOR") {
  CHECK(color_wanted(true, nullptr, "xterm"));
  CHECK_FALSE(color_wanted(false, nullptr, "xterm"));
  CHECK_FALSE(color_wanted(true, "1", "xterm"));
  CHECK(color_wanted(true, "", "xterm"));  // no-color.org: set and not empty
  CHECK_FALSE(color_wanted(true, nullptr, "dumb"));
  CHECK(paint_state("failed", false) == "failed");
  CHECK(paint_state("failed", true) == "\x1b[31mfailed\x1b[0m");
  CHECK(paint_event("instance_completed", true) == "\x1b[32minstance_completed\x1b[0m");
  CHECK(paint_event("step_started", true) == "step_started");
}

TEST_CASE("tables align on visible width, colour included") {
  std::string out =
      render_table({{"ID", "STATE"}, {"a", paint_state("completed", true)}, {"longer", "x"}});
  CHECK(visible_width(paint_state("completed", true)) == 9);
  std::istringstream lines(out);
  std::string l1, l2, l3;
  std::getline(lines, l1);
  std::getline(lines, l2);
  std::getline(lines, l3);
  CHECK(l1 == "ID      STATE");
  CHECK(l2 == "a       \x1b[32mcompleted\x1b[0m");
  CHECK(l3 == "longer  x");
}

TEST_CASE("prometheus exposition: help and type before samples, escaped labels") {
  nlohmann::json stats = {
      {"instances", {{"running", 2}, {"failed", 1}, {"completed", 3}}},
      {"workflows",
       {{{"name", "a\"b"},
         {"started", 5},
         {"completed", 3},
         {"compensated", 2},
         {"failed", 0},
         {"compensation_failed", 0},
         {"success_rate", 0.6},
         {"duration_ms",
          {{"p50", 1500}, {"p90", 2000}, {"p99", 2500}, {"count", 5}, {"sum", 7000}}}},
        // Started, none settled yet.
        {{"name", "new"},
         {"started", 1},
         {"completed", 0},
         {"compensated", 0},
         {"failed", 0},
         {"compensation_failed", 0},
         {"success_rate", nullptr},
         {"duration_ms", {{"p50", 0}, {"p90", 0}, {"p99", 0}, {"count", 0}, {"sum", 0}}}}}},
      {"compensations", 4},
      {"retries", 1},
      {"journal",
       {{"commits", 10},
        {"writes", 20},
        {"avg_batch", 2.0},
        {"commit_ms", {{"p50", 1.5}, {"sum", 30}}}}},
      {"uptime_s", 42}};
  std::string text = render_prometheus(stats);
  CHECK(text.find("# HELP saga_uptime_seconds ") != std::string::npos);
  CHECK(text.find("# TYPE saga_uptime_seconds gauge\nsaga_uptime_seconds 42\n") !=
        std::string::npos);
  CHECK(text.find("saga_instances{state=\"running\"} 2\n") != std::string::npos);
  CHECK(text.find("saga_instances_settled_total{workflow=\"a\\\"b\",state=\"compensated\"} 2\n") !=
        std::string::npos);
  CHECK(text.find("saga_workflow_success_ratio{workflow=\"a\\\"b\"} 0.6\n") != std::string::npos);
  // No ratio and no quantiles for a workflow with nothing settled: not 0, which reads as
  // "all failed" and "instant".
  CHECK(text.find("saga_workflow_success_ratio{workflow=\"new\"}") == std::string::npos);
  CHECK(text.find("saga_instance_duration_seconds{workflow=\"new\",quantile=\"0.5\"} NaN\n") !=
        std::string::npos);
  CHECK(text.find("saga_instance_duration_seconds_count{workflow=\"new\"} 0\n") !=
        std::string::npos);
  CHECK(text.find("saga_instance_duration_seconds{workflow=\"a\\\"b\",quantile=\"0.5\"} 1.5\n") !=
        std::string::npos);
  CHECK(text.find("saga_instance_duration_seconds_sum{workflow=\"a\\\"b\"} 7\n") !=
        std::string::npos);
  CHECK(text.find("saga_compensations_total 4\n") != std::string::npos);
  CHECK(text.find("saga_journal_commit_seconds{quantile=\"0.5\"} 0.0015\n") != std::string::npos);
  CHECK(text.find("saga_journal_commit_seconds_count 10\n") != std::string::npos);
  // Every family is announced once, before its first sample.
  std::istringstream lines(text);
  std::string line, family;
  while (std::getline(lines, line)) {
    if (line.starts_with("# TYPE ")) {
      family = line.substr(7, line.find(' ', 7) - 7);
      continue;
    }
    if (line.starts_with("#")) continue;
    INFO(line);
    CHECK(line.starts_with(family));
  }
}
