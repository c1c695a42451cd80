#include "format.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace saga::ctl {

std::string relative_time(TimePoint t, TimePoint now) {
  int64_t ms = (now - t).count();
  bool future = ms < 0;
  int64_t s = std::llabs(ms) / 1000;
  if (s == 0) return "now";
  std::string amount;
  if (s < 60) {
    amount = fmt::format("{}s", s);
  } else if (s < 3600) {
    amount = fmt::format("{}m", s / 60);
  } else if (s < 48 * 3600) {
    amount = fmt::format("{}h", s / 3600);
  } else {
    amount = fmt::format("{}d", s / 86400);
  }
  return future ? "in " + amount : amount + " ago";
}

std::string relative_time(const json& rfc3339, TimePoint now) {
  if (!rfc3339.is_string()) return "-";
  auto t = parse_rfc3339(rfc3339.get<std::string>());
  return t ? relative_time(*t, now) : "-";
}

std::string human_duration(double ms) {
  if (!(ms >= 0)) return "-";
  if (ms < 1000) return fmt::format("{}ms", static_cast<int64_t>(std::llround(ms)));
  if (ms < 60'000) {
    double s = ms / 1000.0;
    return s < 10 ? fmt::format("{:.1f}s", std::floor(s * 10) / 10)
                  : fmt::format("{}s", static_cast<int64_t>(s));
  }
  auto total_s = static_cast<int64_t>(ms / 1000);
  if (total_s < 3600) return fmt::format("{}m{}s", total_s / 60, total_s % 60);
  if (total_s < 86400) return fmt::format("{}h{}m", total_s / 3600, total_s % 3600 / 60);
  return fmt::format("{}d{}h", total_s / 86400, total_s % 86400 / 3600);
}

bool color_wanted(bool stdout_is_tty, const char* no_color_env, const char* term_env) {
  if (!stdout_is_tty) return false;
  if (no_color_env && *no_color_env) return false;
  if (term_env && std::string_view(term_env) == "dumb") return false;
  return true;
}

namespace {

std::string wrap(std::string_view code, std::string_view text, bool color) {
  if (!color) return std::string(text);
  return fmt::format("\x1b[{}m{}\x1b[0m", code, text);
}

}  // namespace

std::string paint_state(std::string_view state, bool color) {
  return paint_as(state, state, color);
}

std::string paint_event(std::string_view type, bool color) {
  if (type == "instance_completed" || type == "step_succeeded") {
    return paint_as("completed", type, color);
  }
  if (type.ends_with("failed")) return paint_as("failed", type, color);
  if (type.starts_with("compensation") || type.starts_with("instance_compensat")) {
    return paint_as("compensating", type, color);
  }
  return std::string(type);
}

std::string paint_as(std::string_view state, std::string_view text, bool color) {
  std::string_view code;
  if (state == "completed" || state == "succeeded") {
    code = "32";
  } else if (state == "failed" || state == "compensation_failed") {
    code = "31";
  } else if (state == "compensating" || state == "compensated") {
    code = "33";
  } else if (state == "running") {
    code = "36";
  }
  return code.empty() ? std::string(text) : wrap(code, text, color);
}

std::string bold(std::string_view text, bool color) {
  return wrap("1", text, color);
}

std::string dim(std::string_view text, bool color) {
  return wrap("2", text, color);
}

size_t visible_width(std::string_view text) {
  size_t width = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\x1b' && i + 1 < text.size() && text[i + 1] == '[') {
      i += 2;
      while (i < text.size() && !(text[i] >= '@' && text[i] <= '~')) ++i;
      continue;
    }
    // Count UTF-8 lead bytes only.
    if ((static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) ++width;
  }
  return width;
}

std::string render_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], visible_width(row[i]));
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - visible_width(row[i]) + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

namespace {

std::string label_value(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string number(const json& v) {
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (std::isnan(d)) return "NaN";
    if (std::isinf(d)) return d > 0 ? "+Inf" : "-Inf";
    return fmt::format("{}", d);
  }
  return "0";
}

double number_of(const json& v) {
  return v.is_number() ? v.get<double>() : 0.0;
}

class Exposition {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  void sample(std::string_view name, const std::vector<std::pair<std::string, std::string>>& labels,
              const std::string& value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      for (size_t i = 0; i < labels.size(); ++i) {
        out_ += fmt::format("{}{}=\"{}\"", i ? "," : "", labels[i].first,
                            label_value(labels[i].second));
      }
      out_ += '}';
    }
    out_ += ' ' + value + '\n';
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string render_prometheus(const json& stats) {
  Exposition e;
  const json& workflows = stats.contains("workflows") ? stats["workflows"] : json::array();
  auto wf_name = [](const json& w) { return w.value("name", std::string()); };

  e.family("saga_uptime_seconds", "gauge", "Seconds since sagad started.");
  e.sample("saga_uptime_seconds", {}, number(stats.value("uptime_s", json(0))));

  e.family("saga_instances", "gauge",
           "Instances in flight or parked now, by state (running, compensating, failed, "
           "compensation_failed).");
  if (stats.contains("instances")) {
    for (const char* state : {"running", "compensating", "failed", "compensation_failed"}) {
      e.sample("saga_instances", {{"state", state}},
               number(stats["instances"].value(state, json(0))));
    }
  }

  e.family("saga_instances_started_total", "counter",
           "Instances started since sagad started, by workflow.");
  for (const auto& w : workflows) {
    e.sample("saga_instances_started_total", {{"workflow", wf_name(w)}},
             number(w.value("started", json(0))));
  }

  e.family("saga_instances_settled_total", "counter",
           "Times an instance reached a terminal or parked state since sagad started, by "
           "workflow and state.");
  for (const auto& w : workflows) {
    for (const char* state : {"completed", "compensated", "failed", "compensation_failed"}) {
      e.sample("saga_instances_settled_total", {{"workflow", wf_name(w)}, {"state", state}},
               number(w.value(state, json(0))));
    }
  }

  e.family("saga_workflow_success_ratio", "gauge",
           "Share of settled instances that completed, by workflow.");
  for (const auto& w : workflows) {
    // No sample until an instance settles, rather than a ratio of 0.
    if (!w.contains("success_rate") || !w["success_rate"].is_number()) continue;
    e.sample("saga_workflow_success_ratio", {{"workflow", wf_name(w)}}, number(w["success_rate"]));
  }

  e.family("saga_instance_duration_seconds", "summary",
           "Time from start to settling, by workflow; quantiles over the most recent settles.");
  for (const auto& w : workflows) {
    const json d = w.value("duration_ms", json::object());
    // A quantile of no observations is NaN, as Prometheus' own clients give it.
    const bool observed = number_of(d.value("count", json(0))) > 0;
    for (auto [q, key] : {std::pair{"0.5", "p50"}, {"0.9", "p90"}, {"0.99", "p99"}}) {
      e.sample("saga_instance_duration_seconds", {{"workflow", wf_name(w)}, {"quantile", q}},
               observed ? number(json(number_of(d.value(key, json(0))) / 1000.0)) : "NaN");
    }
    e.sample("saga_instance_duration_seconds_sum", {{"workflow", wf_name(w)}},
             number(json(number_of(d.value("sum", json(0))) / 1000.0)));
    e.sample("saga_instance_duration_seconds_count", {{"workflow", wf_name(w)}},
             number(d.value("count", json(0))));
  }

  e.family("saga_compensations_total", "counter", "Compensations that succeeded.");
  e.sample("saga_compensations_total", {}, number(stats.value("compensations", json(0))));
  e.family("saga_retries_total", "counter",
           "Failed attempts (steps and compensations) that were scheduled for a retry.");
  e.sample("saga_retries_total", {}, number(stats.value("retries", json(0))));

  const json journal = stats.value("journal", json::object());
  e.family("saga_journal_up", "gauge", "1 while the journal takes writes, 0 once one failed.");
  e.sample("saga_journal_up", {}, journal.value("ok", true) ? "1" : "0");
  e.family("saga_journal_commits_total", "counter", "Journal commits (write batches).");
  e.sample("saga_journal_commits_total", {}, number(journal.value("commits", json(0))));
  e.family("saga_journal_writes_total", "counter",
           "Instance writes made durable; divided by commits, the group-commit batch size.");
  e.sample("saga_journal_writes_total", {}, number(journal.value("writes", json(0))));
  e.family("saga_journal_batch_size", "gauge", "Average instance writes per journal commit.");
  e.sample("saga_journal_batch_size", {}, number(journal.value("avg_batch", json(0.0))));
  e.family("saga_journal_commit_seconds", "summary",
           "Journal commit latency (write and fsync); quantiles over the most recent commits.");
  const json commit = journal.value("commit_ms", json::object());
  for (auto [q, key] : {std::pair{"0.5", "p50"}, {"0.9", "p90"}, {"0.99", "p99"}}) {
    e.sample("saga_journal_commit_seconds", {{"quantile", q}},
             number(json(number_of(commit.value(key, json(0))) / 1000.0)));
  }
  e.sample("saga_journal_commit_seconds_sum", {},
           number(json(number_of(commit.value("sum", json(0))) / 1000.0)));
  e.sample("saga_journal_commit_seconds_count", {}, number(journal.value("commits", json(0))));

  const json watchers = stats.value("watchers", json::object());
  e.family("saga_watchers", "gauge", "Connected `watch` subscribers.");
  e.sample("saga_watchers", {}, number(watchers.value("active", json(0))));
  e.family("saga_watchers_dropped_total", "counter", "Watchers dropped because they fell behind.");
  e.sample("saga_watchers_dropped_total", {}, number(watchers.value("dropped", json(0))));
  return e.take();
}

}  // namespace saga::ctl
