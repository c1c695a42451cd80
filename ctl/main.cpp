// sagactl: drives sagad over its Unix socket (DESIGN §7).
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <expected>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <saga/json_depth.hpp>
#include <set>
#include <sstream>

#include "control/client.hpp"
#include "engine/escape.hpp"
#include "engine/time.hpp"
#include "format.hpp"
#include "plugin_host/plugin_registry.hpp"
#include "plugin_host/step_schema.hpp"
#include "workflow/loader.hpp"
#include "workflow/registry.hpp"

namespace {

using json = nlohmann::json;
using namespace saga::ctl;

constexpr int kOk = 0, kFailed = 1, kUsage = 2, kUnreachable = 3;

struct Options {
  std::string socket;
  bool json = false;
  bool color = false;
  saga::TimePoint now = saga::now_ms();
};

// Text of several lines (a file's load errors, one per line) with every other control character
// escaped, so that none reaches the terminal.
std::string escaped_lines(std::string_view message) {
  std::string text;
  for (size_t from = 0;;) {
    const size_t end = message.find('\n', from);
    saga::append_escaped(message.substr(from, end - from), text);
    if (end == std::string_view::npos) break;
    text += '\n';
    from = end + 1;
  }
  return text;
}

// Messages may come from sagad and hold a step's error text.
int fail(int code, std::string_view message) {
  std::cerr << "sagactl: " << escaped_lines(message) << "\n";
  return code;
}

// A value as one line of text: strings escaped (a step's error, a cancel reason), "-" for null.
std::string text_of(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return saga::escape_control(v.get_ref<const std::string&>());
  return v.dump();
}

// "2026-11-23T10:00:00.123Z (3s ago)", or "-".
std::string when(const Options& o, const json& at) {
  if (!at.is_string()) return "-";
  return text_of(at) + " " + dim("(" + relative_time(at, o.now) + ")", o.color);
}

// The time between two RFC 3339 texts, for people; "-" unless both are there.
std::string between(const json& from, const json& to) {
  if (!from.is_string() || !to.is_string()) return "-";
  auto a = saga::parse_rfc3339(from.get<std::string>());
  auto b = saga::parse_rfc3339(to.get<std::string>());
  if (!a || !b) return "-";
  return human_duration(static_cast<double>((*b - *a).count()));
}

// The fields of a history event that say more than its type.
std::string event_detail(const Options& o, const json& e) {
  std::string detail;
  for (const char* k : {"attempt", "error", "cause", "reason", "retry_at"}) {
    if (!e.contains(k)) continue;
    std::string value = std::string(k) == "retry_at" ? relative_time(e[k], o.now) : text_of(e[k]);
    detail += std::string(detail.empty() ? "" : " ") + k + "=" + value;
  }
  return detail;
}

// Long JSON cut for a terminal line; --json has it whole.
std::string clip(std::string text) {
  if (text.size() > 200) text = text.substr(0, 197) + "...";
  return text;
}

void print_instance(const Options& o, const json& inst) {
  std::string state = paint_state(text_of(inst["state"]), o.color);
  if (!inst["cause"].is_null()) state += " (cause " + text_of(inst["cause"]) + ")";
  std::cout << "id:        " << bold(text_of(inst["id"]), o.color) << "\n"
            << "workflow:  " << text_of(inst["workflow"]) << " (version "
            << text_of(inst["version"]) << ")\n"
            << "state:     " << state << "\n"
            << "created:   " << when(o, inst["created_at"]) << "\n"
            << "updated:   " << when(o, inst["updated_at"]) << "\n"
            << "input:     " << clip(inst.value("input", json::object()).dump()) << "\n\n";
  std::vector<std::vector<std::string>> rows{
      {"STEP", "STATE", "ATTEMPTS", "STARTED", "TOOK", "COMPENSATION", "ERROR"}};
  for (const auto& s : inst.value("steps", json::array())) {
    const json comp = s.value("compensation", json::object());
    std::string comp_state = comp.value("state", "none");
    if (comp_state != "none" && comp.value("attempts", 0) > 0)
      comp_state += fmt::format(" ({} attempt{})", comp.value("attempts", 0),
                                comp.value("attempts", 0) == 1 ? "" : "s");
    rows.push_back({text_of(s["name"]), paint_state(text_of(s["state"]), o.color),
                    text_of(s["attempts"]), relative_time(s.value("started_at", json()), o.now),
                    between(s.value("started_at", json()), s.value("ended_at", json())),
                    comp_state == "none" ? "-" : comp_state,
                    s.value("error", json()).is_null() ? text_of(comp.value("error", json()))
                                                       : text_of(s["error"])});
  }
  std::cout << render_table(rows);
  std::vector<std::vector<std::string>> outputs;
  for (const auto& s : inst.value("steps", json::array())) {
    const json output = s.value("output", json());
    if (output.is_null()) continue;
    outputs.push_back({"  " + text_of(s["name"]) + ":", clip(output.dump())});
  }
  if (!outputs.empty()) std::cout << "\noutputs:\n" << render_table(outputs);
  if (inst.contains("history")) {
    std::cout << "\n";
    std::vector<std::vector<std::string>> hist{{"SEQ", "AT", "+", "EVENT", "STEP", "DETAIL"}};
    json first = inst["history"].empty() ? json() : inst["history"][0].value("at", json());
    for (const auto& e : inst["history"]) {
      std::string at = text_of(e["at"]);
      hist.push_back({text_of(e["seq"]), at.size() > 11 ? at.substr(11) : at,
                      between(first, e.value("at", json())),
                      paint_event(text_of(e["type"]), o.color),
                      e.contains("step") ? text_of(e["step"]) : "-", event_detail(o, e)});
    }
    std::cout << render_table(hist);
  }
}

// Pads to a visible width, so that streamed lines line up without knowing what comes next.
std::string pad(std::string text, size_t width) {
  size_t w = visible_width(text);
  if (w < width) text += std::string(width - w, ' ');
  return text;
}

std::string socket_path(const Options& o) {
  if (!o.socket.empty()) return o.socket;
  if (const char* env = std::getenv("SAGA_SOCKET"); env && *env) return env;
  return "/run/saga/sagad.sock";
}

int print_remote_error(const Options& o, const saga::rpc::ClientError& error) {
  if (error.kind == saga::rpc::ClientError::Kind::transport)
    return fail(kUnreachable, error.message);
  if (o.json) {
    std::cout << json{{"error", {{"code", error.code}, {"message", error.message}}}}.dump() << "\n";
  }
  return fail(kFailed, error.message);
}

// Calls one method; prints errors; returns the exit code, and the result through `out`.
int call(const Options& o, const std::string& method, json params, json& out) {
  auto client = saga::rpc::Client::connect(socket_path(o));
  if (!client) return fail(kUnreachable, client.error().message);
  auto r = client->call(method, std::move(params));
  if (!r) return print_remote_error(o, r.error());
  out = std::move(*r);
  return kOk;
}

// A file, pipe or stdin ("-"), up to the most a request may carry.
std::expected<std::string, std::string> read_input_file(const std::string& path) {
  const std::string what = "cannot read --input-file " + path + ": ";
  int fd =
      path == "-" ? ::fcntl(0, F_DUPFD_CLOEXEC, 3) : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(what + std::strerror(errno));
  std::string text;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return std::unexpected(what + std::strerror(err));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > saga::rpc::kMaxRequestBytes) {
      ::close(fd);
      return std::unexpected("--input-file " + path +
                             " holds more than 1 MiB, the most a request may carry");
    }
  }
  ::close(fd);
  return text;
}

std::optional<json> parse_object(const std::string& text, const std::string& what, int& code) {
  // The request holds it two levels down ("params", "input").
  if (saga::json_nests_deeper_than(text, saga::kMaxJsonDepth - 2)) {
    code = fail(kUsage, what + " nests arrays and objects more than " +
                            std::to_string(saga::kMaxJsonDepth - 2) + " levels deep; flatten it");
    return std::nullopt;
  }
  json v;
  try {
    v = json::parse(text);
  } catch (const json::exception& e) {
    // nlohmann's words after its "[json.exception.parse_error.101] " tag.
    std::string why = e.what();
    if (auto tag = why.find("] "); tag != std::string::npos) why.erase(0, tag + 2);
    code = fail(kUsage, what + " is not JSON: " + why);
    return std::nullopt;
  }
  if (!v.is_object()) {
    code = fail(kUsage, what + " must be a JSON object, e.g. '{\"order_id\": 42}'");
    return std::nullopt;
  }
  return v;
}

bool settles(std::string_view event_type) {
  return event_type == "instance_completed" || event_type == "instance_compensated" ||
         event_type == "instance_failed" || event_type == "instance_compensation_failed";
}

// Streams events until the client stops it, or, when watching one instance, until that
// instance settles (terminal or parked, as start --wait): exit 0 if it completed, else 1.
int watch(Options& o, const std::string& id, const std::string& workflow) {
  auto client = saga::rpc::Client::connect(socket_path(o));
  if (!client) return fail(kUnreachable, client.error().message);
  json params = json::object();
  if (!id.empty()) params["id"] = id;
  if (!workflow.empty()) params["workflow"] = workflow;
  if (auto sent = client->send("watch", params); !sent)
    return fail(kUnreachable, sent.error().message);
  uint64_t settle_from = 0;
  for (;;) {
    auto message = client->read_message();
    if (!message) return fail(kUnreachable, message.error().message);
    if (message->contains("id") && !message->contains("method")) {
      if (auto err = message->find("error"); err != message->end()) {
        return print_remote_error(o, {saga::rpc::ClientError::Kind::remote, err->value("code", 0),
                                      err->value("message", std::string("unknown error"))});
      }
      settle_from = (*message)["result"].value("last_seq", uint64_t{0});
      continue;
    }
    std::string method = message->value("method", "");
    const json ev = message->value("params", json::object());
    if (method == "watch.dropped") {
      return fail(kFailed, "sagad stopped this watch: " + ev.value("reason", std::string("?")));
    }
    if (method != "event") continue;
    o.now = saga::now_ms();
    if (o.json) {
      std::cout << ev.dump() << std::endl;
    } else {
      std::string at = text_of(ev.value("at", json()));
      std::vector<std::string> cells{at.size() > 11 ? at.substr(11) : at,
                                     text_of(ev["id"]),
                                     text_of(ev["workflow"]),
                                     pad(paint_event(text_of(ev["type"]), o.color), 28),
                                     ev.contains("step") ? text_of(ev["step"]) : "-",
                                     event_detail(o, ev)};
      std::string line;
      for (const auto& c : cells) {
        if (c.empty()) continue;
        line += (line.empty() ? "" : "  ") + c;
      }
      std::cout << line << std::endl;
    }
    std::string type = ev.value("type", "");
    if (!id.empty() && settles(type) && ev.value("seq", uint64_t{0}) >= settle_from) {
      return type == "instance_completed" ? kOk : kFailed;
    }
  }
}

std::string percent(double ratio) {
  return fmt::format("{:.1f}%", ratio * 100);
}

void print_stats(const Options& o, const json& s) {
  const json journal = s.value("journal", json::object());
  const json commit = journal.value("commit_ms", json::object());
  std::cout << bold("sagad", o.color) << " up " << human_duration(s.value("uptime_s", 0.0) * 1000.0)
            << "\n\n";
  std::vector<std::vector<std::string>> states{{"STATE", "INSTANCES"}};
  for (const char* st :
       {"running", "compensating", "failed", "compensation_failed", "completed", "compensated"}) {
    states.push_back({paint_state(st, o.color), text_of(s["instances"].value(st, json(0)))});
  }
  std::cout << render_table(states) << "(completed and compensated: since sagad started)\n\n";
  std::vector<std::vector<std::string>> rows{{"WORKFLOW", "STARTED", "COMPLETED", "COMPENSATED",
                                              "FAILED", "SUCCESS", "P50", "P90", "P99"}};
  for (const auto& w : s.value("workflows", json::array())) {
    const json d = w.value("duration_ms", json::object());
    // Nothing settled yet: no rate and no durations to show.
    const bool settled = w.contains("success_rate") && w["success_rate"].is_number();
    rows.push_back({text_of(w["name"]), text_of(w["started"]), text_of(w["completed"]),
                    text_of(w["compensated"]),
                    std::to_string(w.value("failed", 0) + w.value("compensation_failed", 0)),
                    settled ? percent(w.value("success_rate", 0.0)) : "-",
                    settled ? human_duration(d.value("p50", 0.0)) : "-",
                    settled ? human_duration(d.value("p90", 0.0)) : "-",
                    settled ? human_duration(d.value("p99", 0.0)) : "-"});
  }
  if (rows.size() > 1) std::cout << render_table(rows) << "\n";
  std::cout << fmt::format("compensations run: {}   retries: {}\n", text_of(s["compensations"]),
                           text_of(s["retries"]))
            << fmt::format(
                   "journal: {} commits, {:.2f} writes per commit, commit p50 {:.2f}ms p90 "
                   "{:.2f}ms p99 {:.2f}ms\n",
                   text_of(journal.value("commits", json(0))), journal.value("avg_batch", 0.0),
                   commit.value("p50", 0.0), commit.value("p90", 0.0), commit.value("p99", 0.0));
  if (s.contains("watchers")) {
    std::cout << fmt::format("watchers: {} ({} dropped for falling behind)\n",
                             text_of(s["watchers"]["active"]), text_of(s["watchers"]["dropped"]));
  }
}

// Validates workflow files without a daemon. Step types and their parameters are checked
// against --plugins when given, else against the running daemon's plugins when it answers,
// else only the structure is checked.
int validate(const Options& o, const std::vector<std::string>& files,
             const std::vector<std::string>& plugin_dirs, json& result) {
  saga::PluginRegistry registry;
  std::map<std::string, saga::StepSchema> from_daemon;
  saga::StepSchemaLookup lookup;
  std::string checked_against = "structure only (no --plugins and no daemon answered)";
  if (!plugin_dirs.empty()) {
    for (const auto& dir : plugin_dirs) {
      for (const auto& e : registry.load_directory(dir))
        std::cerr << "sagactl: " << e.message << "\n";
    }
    lookup = [&registry](const std::string& uses) -> std::optional<saga::StepSchema> {
      const saga::StepTypeInfo* info = registry.find(uses);
      if (!info) return std::nullopt;
      return saga::schema_of(*info);
    };
    checked_against = "the plugins in --plugins";
  } else if (auto client = saga::rpc::Client::connect(socket_path(o))) {
    if (auto plugins = client->call("plugins.list")) {
      for (const auto& p : (*plugins)["plugins"]) {
        for (const auto& t : p["step_types"]) {
          saga::StepSchema schema;
          for (const auto& param : t["params"]) {
            schema.params.push_back({param["name"].get<std::string>(),
                                     param["type"].get<std::string>(),
                                     param["required"].get<bool>()});
          }
          schema.accepts_any_params = t.value("accepts_any_params", false);
          schema.can_compensate = t.value("compensates", false);
          from_daemon[t["name"].get<std::string>()] = std::move(schema);
        }
      }
      lookup = [&from_daemon](const std::string& uses) -> std::optional<saga::StepSchema> {
        auto it = from_daemon.find(uses);
        if (it == from_daemon.end()) return std::nullopt;
        return it->second;
      };
      checked_against = "the daemon's plugins";
    }
  }
  // A directory stands for its workflow files, the ones sagad would load from it.
  std::vector<std::string> paths;
  for (const auto& file : files) {
    std::error_code ec;
    if (!std::filesystem::is_directory(file, ec)) {
      paths.push_back(file);
      continue;
    }
    saga::WorkflowFiles listed = saga::workflow_files(file);
    std::vector<std::string> in_dir = std::move(listed.paths);
    // What cannot be read is reported as load_workflow_file words it, in its place.
    for (const auto& unreadable : listed.unreadable) in_dir.push_back(unreadable.file);
    if (listed.error || in_dir.empty()) {
      paths.push_back(file);  // reported as what it is below
      continue;
    }
    std::sort(in_dir.begin(), in_dir.end());
    paths.insert(paths.end(), in_dir.begin(), in_dir.end());
  }
  // A file named twice (itself and its directory) is validated once.
  std::set<std::filesystem::path> seen;
  std::erase_if(paths, [&](const std::string& p) {
    std::error_code ec;
    auto canonical = std::filesystem::weakly_canonical(p, ec);
    return !seen.insert(ec ? std::filesystem::path(p) : canonical).second;
  });
  json files_json = json::array();
  int rc = kOk;
  std::map<std::string, std::string> name_file;  // as sagad refuses a second file with a name
  for (const auto& file : paths) {
    std::error_code ec;
    auto def = std::filesystem::is_directory(file, ec)
                   ? std::unexpected(saga::Error{
                         saga::ErrorCode::invalid_argument,
                         file + ": holds no workflow files (*.yaml, *.yml) that can be read"})
                   : saga::load_workflow_file(file, lookup);
    if (def) {
      if (auto [other, fresh] = name_file.emplace(def->name, file); !fresh) {
        def = std::unexpected(saga::Error{saga::ErrorCode::invalid_argument,
                                          file + ": workflow " + def->name +
                                              " is already defined in " + other->second +
                                              "; rename one of them"});
      }
    }
    if (def) {
      files_json.push_back(
          {{"file", file}, {"ok", true}, {"name", def->name}, {"version", def->version}});
      if (!o.json) std::cout << file << ": ok (workflow " << def->name << ")\n";
    } else {
      rc = kFailed;
      files_json.push_back({{"file", file}, {"ok", false}, {"error", def.error().message}});
      std::cerr << def.error().message << "\n";
    }
  }
  if (!o.json) std::cout << "checked against " << checked_against << "\n";
  result = {{"files", files_json}, {"checked_against", checked_against}};
  return rc;
}

std::string example(std::initializer_list<const char*> lines) {
  std::string text = "Examples:";
  for (const char* l : lines) text += std::string("\n  ") + l;
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"sagactl: control the saga daemon"};
  app.footer(example({"sagactl start hello --input '{\"name\": \"world\"}' --wait",
                      "sagactl list --state failed", "sagactl watch ID",
                      "sagactl COMMAND --help   (every command has its own examples)"}) +
             "\n\nExit codes: 0 success, 1 the operation failed, 2 usage error,\n"
             "3 sagad cannot be reached.");
  app.require_subcommand(1);
  app.fallthrough();
  // An empty path is refused rather than taken as "not given".
  const auto non_empty = CLI::Validator(
      [](std::string& path) { return path.empty() ? std::string("needs a path") : std::string(); },
      "PATH");
  app.add_option("--socket", o.socket,
                 "sagad's socket (default $SAGA_SOCKET, then /run/saga/sagad.sock)")
      ->check(non_empty);
  app.add_flag("--json", o.json, "print JSON for scripts");

  auto* ping = app.add_subcommand("ping", "daemon version, uptime and state dir");
  ping->footer(example({"sagactl ping", "sagactl --socket .saga/sagad.sock ping --json"}));

  std::string workflow, input_text, input_file, id;
  bool wait = false;
  auto* start = app.add_subcommand("start", "start an instance; prints its id");
  start->footer(example({"sagactl start hello",
                         "sagactl start hello --input '{\"name\": \"x\"}' "
                         "--id order-42 --wait",
                         "sagactl start order-checkout --input-file order.json --json"}) +
                "\n\nWith --wait: exit 0 when the instance completed, 1 when it ended otherwise.");
  start->add_option("workflow", workflow, "workflow name")->required();
  auto* input_opt = start->add_option("--input", input_text, "instance input, a JSON object");
  start->add_option("--input-file", input_file, "read the input from a file (- for stdin)")
      ->excludes(input_opt);
  start->add_option("--id", id, "instance id; starting an existing id returns that instance");
  start->add_flag("--wait", wait, "wait until the instance settles; exit 1 unless completed");

  std::string inspect_id;
  bool history = false;
  auto* inspect = app.add_subcommand("inspect", "an instance's state, steps, attempts and errors");
  inspect->footer(example({"sagactl inspect ID", "sagactl inspect ID --history",
                           "sagactl inspect ID --json | jq .steps"}));
  inspect->add_option("id", inspect_id, "instance id")->required();
  inspect->add_flag("--history", history, "include the journaled events");

  std::string state, wf_filter, cursor;
  int limit = 50;
  auto* list = app.add_subcommand("list", "instances, newest first, a page at a time");
  list->footer(example({"sagactl list", "sagactl list --state failed --workflow order-checkout",
                        "sagactl list --limit 20 --cursor CURSOR   (CURSOR: the previous page's "
                        "next_cursor)"}));
  list->add_option("--state", state, "only instances in this state")
      ->check(CLI::IsMember({"running", "completed", "compensating", "compensated", "failed",
                             "compensation_failed"}));
  list->add_option("--workflow", wf_filter, "only instances of this workflow");
  list->add_option("--limit", limit, "at most this many (1-1000, default 50)")
      ->check(CLI::Validator(
          [](std::string& text) {
            int n = 0;
            const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
            const bool ok =
                ec == std::errc() && end == text.data() + text.size() && n >= 1 && n <= 1000;
            return ok ? std::string() : "must be a whole number from 1 to 1000, not " + text;
          },
          "1-1000"));
  list->add_option("--cursor", cursor, "the next_cursor of a previous page");

  std::string retry_id, from, retry_input;
  auto* retry = app.add_subcommand("retry", "resume a failed or compensation_failed instance");
  retry->footer(example({"sagactl retry ID", "sagactl retry ID --from charge",
                         "sagactl retry ID --input '{\"order_id\": 43}'"}));
  retry->add_option("id", retry_id, "instance id")->required();
  retry->add_option("--from", from, "re-run this step and everything downstream of it");
  retry->add_option("--input", retry_input, "replace the instance input (a JSON object)");

  std::string cancel_id, reason;
  auto* cancel = app.add_subcommand("cancel", "cancel an instance and compensate");
  cancel->footer(example({"sagactl cancel ID", "sagactl cancel ID --reason 'customer asked'"}));
  cancel->add_option("id", cancel_id, "instance id")->required();
  cancel->add_option("--reason", reason, "why, recorded in the journal");

  std::string watch_id, watch_workflow;
  auto* watch_cmd = app.add_subcommand("watch", "stream events live as they are journaled");
  watch_cmd->footer(
      example({"sagactl watch                      every instance, until Ctrl-C",
               "sagactl watch --workflow hello     one workflow's instances",
               "sagactl watch ID                   one instance, from its first event",
               "sagactl watch ID --json            one JSON object per line"}) +
      "\n\nWatching one instance replays its history first and ends when the instance\n"
      "settles (as start --wait): exit 0 if it completed, 1 otherwise. sagad drops a\n"
      "watcher that falls behind (exit 1, with the reason); exit 3 if the connection is lost.");
  watch_cmd->add_option("id", watch_id, "instance id (default: every instance)");
  watch_cmd->add_option("--workflow", watch_workflow, "only instances of this workflow");

  std::vector<std::string> wf_args;
  auto* workflows = app.add_subcommand("workflows", "workflow definitions and load errors");
  workflows->footer(example({"sagactl workflows", "sagactl workflows show hello",
                             "sagactl workflows validate my.yaml --plugins build/plugins"}));
  std::vector<std::string> validate_plugins;
  workflows->add_option("args", wf_args, "list | show NAME | validate FILE...");
  workflows->add_option("--plugins", validate_plugins,
                        "with validate: check step types against the plugins in DIR (repeatable)");

  std::vector<std::string> sched_args;
  auto* schedules = app.add_subcommand(
      "schedules",
      "schedules with their next and last fire times; pause or resume a workflow's schedules");
  schedules->footer(
      example({"sagactl schedules", "sagactl schedules pause nightly-report",
               "sagactl schedules resume nightly-report", "sagactl schedules --json"}));
  schedules->add_option("args", sched_args, "list | pause WORKFLOW | resume WORKFLOW");

  auto* plugins = app.add_subcommand("plugins", "loaded plugins and their step types");
  plugins->footer(example({"sagactl plugins", "sagactl plugins --json"}));

  bool prometheus = false;
  auto* stats = app.add_subcommand(
      "stats", "counts by state, success rates, durations, compensations, journal latency");
  stats->footer(
      example({"sagactl stats", "sagactl stats --json",
               "sagactl stats --prometheus > /var/lib/node_exporter/textfile/saga.prom"}) +
      "\n\nCounters (started, settled, compensations, retries) count since sagad started.");
  stats->add_flag("--prometheus", prometheus, "print the Prometheus text exposition format");

  for (auto* sub : app.get_subcommands({})) {
    sub->add_option("--socket", o.socket, "sagad's socket")->check(non_empty);
    sub->add_flag("--json", o.json, "print JSON for scripts");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // A word that names no command is left over, and CLI11 reports only the missing command.
    const auto left = app.remaining();
    if (app.get_subcommands().empty() && !left.empty() && !left.front().starts_with('-')) {
      std::cerr << "sagactl: unknown command " << left.front()
                << "; sagactl --help lists the commands\n";
      return kUsage;
    }
    std::cerr << "sagactl: " << e.what() << "; sagactl --help lists the commands\n";
    return kUsage;
  }
  o.color =
      color_wanted(::isatty(STDOUT_FILENO) == 1, std::getenv("NO_COLOR"), std::getenv("TERM"));

  json result;
  int rc = kOk;
  if (ping->parsed()) {
    rc = call(o, "ping", json::object(), result);
    if (rc == kOk && !o.json) {
      std::cout << fmt::format("sagad {} (pid {}), up {}, state in {}\n",
                               text_of(result["version"]), text_of(result["pid"]),
                               human_duration(result.value("uptime_s", 0.0) * 1000.0),
                               text_of(result["state_dir"]));
    }
    // Answering is not enough to be healthy: a sagad whose journal stopped takes no work.
    const json journal = rc == kOk ? result.value("journal", json::object()) : json::object();
    if (rc == kOk && !journal.value("ok", true)) {
      rc = fail(kFailed, "the journal has stopped (" + text_of(journal["error"]) +
                             "); sagad takes no new work until it is restarted");
    }
  } else if (start->parsed()) {
    json params = {{"workflow", workflow}, {"wait", wait}};
    int code = kOk;
    if (!input_file.empty()) {
      auto text = read_input_file(input_file);
      if (!text) return fail(kUsage, text.error());
      input_text = std::move(*text);
    }
    if (start->count("--id") > 0) {
      if (id.empty() || id.size() > saga::rpc::kMaxIdBytes) {
        return fail(kUsage, "--id is 1 to 128 bytes, not " + std::to_string(id.size()));
      }
      if (saga::rpc::has_control_character(id)) {
        return fail(kUsage, "--id must not contain control characters (newline, tab)");
      }
    }
    if (!input_text.empty()) {
      auto input = parse_object(
          input_text, input_file.empty() ? "--input" : "--input-file " + input_file, code);
      if (!input) return code;
      params["input"] = *input;
    }
    if (!id.empty()) params["id"] = id;
    rc = call(o, "start", params, result);
    o.now = saga::now_ms();  // --wait may have taken a while: times read from when it printed
    if (rc == kOk) {
      if (wait && result.contains("instance") &&
          result["instance"].value("state", "") != "completed") {
        rc = kFailed;
        std::cerr << "sagactl: instance " << text_of(result["id"]) << " ended "
                  << text_of(result["instance"]["state"]) << "\n";
      }
      if (!o.json) {
        std::cout << text_of(result["id"]) << (result.value("existing", false) ? " (existing)" : "")
                  << "\n";
        if (result.contains("instance")) {
          std::cout << "\n";
          print_instance(o, result["instance"]);
        }
      }
    }
  } else if (inspect->parsed()) {
    rc = call(o, "inspect", {{"id", inspect_id}, {"history", history}}, result);
    if (rc == kOk && !o.json) print_instance(o, result);
  } else if (list->parsed()) {
    json params = {{"limit", limit}};
    if (!state.empty()) params["state"] = state;
    if (!wf_filter.empty()) params["workflow"] = wf_filter;
    if (!cursor.empty()) params["cursor"] = cursor;
    rc = call(o, "list", params, result);
    // sagad ends a page early when it has read many instances without filling it, or when the
    // page is large: the next pages fill this one up to --limit (a filter that matches few of many
    // instances), while what was fetched stays modest.
    size_t fetched = rc == kOk ? result["instances"].dump().size() : 0;
    while (rc == kOk && result["instances"].size() < static_cast<size_t>(limit) &&
           !result["next_cursor"].is_null() && fetched < (size_t{16} << 20)) {
      json more;
      params["cursor"] = result["next_cursor"];
      params["limit"] = static_cast<size_t>(limit) - result["instances"].size();
      rc = call(o, "list", params, more);
      if (rc != kOk) break;
      fetched += more["instances"].dump().size();
      for (auto& i : more["instances"]) result["instances"].push_back(std::move(i));
      result["next_cursor"] = std::move(more["next_cursor"]);
    }
    if (rc == kOk && !o.json) {
      std::vector<std::vector<std::string>> rows{{"ID", "WORKFLOW", "STATE", "CREATED", "UPDATED"}};
      for (const auto& i : result["instances"]) {
        std::string st = paint_state(text_of(i["state"]), o.color);
        if (!i.value("cause", json()).is_null()) st += " (" + text_of(i["cause"]) + ")";
        rows.push_back({text_of(i["id"]), text_of(i["workflow"]), st,
                        relative_time(i.value("created_at", json()), o.now),
                        relative_time(i.value("updated_at", json()), o.now)});
      }
      if (rows.size() == 1) {
        std::cout << "no instances\n";
      } else {
        std::cout << render_table(rows);
      }
      if (!result["next_cursor"].is_null()) {
        std::string more = "sagactl list --cursor " + text_of(result["next_cursor"]);
        if (!state.empty()) more += " --state " + state;
        if (!wf_filter.empty()) more += " --workflow " + wf_filter;
        if (limit != 50) more += " --limit " + std::to_string(limit);
        std::cout << "\nmore: " << more << "\n";
      }
    }
  } else if (retry->parsed()) {
    json params = {{"id", retry_id}};
    if (!from.empty()) params["from"] = from;
    if (!retry_input.empty()) {
      int code = kOk;
      auto input = parse_object(retry_input, "--input", code);
      if (!input) return code;
      params["input"] = *input;
    }
    rc = call(o, "retry", params, result);
    if (rc == kOk && !o.json) std::cout << "retrying " << retry_id << "\n";
  } else if (cancel->parsed()) {
    json params = {{"id", cancel_id}};
    if (!reason.empty()) params["reason"] = reason;
    rc = call(o, "cancel", params, result);
    if (rc == kOk && !o.json) std::cout << "cancelling " << cancel_id << "\n";
  } else if (watch_cmd->parsed()) {
    return watch(o, watch_id, watch_workflow);
  } else if (workflows->parsed()) {
    if (wf_args.empty() || wf_args[0] == "list") {
      rc = call(o, "workflows.list", json::object(), result);
      if (rc == kOk && !o.json) {
        std::vector<std::vector<std::string>> rows{{"NAME", "VERSION", "STEPS", "FILE"}};
        for (const auto& w : result["workflows"]) {
          rows.push_back({text_of(w["name"]), text_of(w["version"]),
                          std::to_string(w["steps"].size()), text_of(w["file"])});
        }
        std::cout << render_table(rows);
        for (const auto& e : result["errors"])
          std::cout << "\nerror: " << escaped_lines(e.value("error", "")) << "\n";
      }
    } else if (wf_args[0] == "validate" && wf_args.size() >= 2) {
      rc = validate(o, std::vector<std::string>(wf_args.begin() + 1, wf_args.end()),
                    validate_plugins, result);
    } else if (wf_args[0] == "show" && wf_args.size() == 2) {
      rc = call(o, "workflows.show", {{"name", wf_args[1]}}, result);
      // The file as written, to be saved back as it is.
      if (rc == kOk && !o.json) std::cout << result.value("source", "");
    } else {
      return fail(kUsage, "workflows takes: list | show NAME | validate FILE...");
    }
  } else if (schedules->parsed()) {
    std::string method = "schedules.list";
    json params = json::object();
    if (!sched_args.empty() && sched_args[0] != "list") {
      if ((sched_args[0] != "pause" && sched_args[0] != "resume") || sched_args.size() != 2) {
        return fail(kUsage, "schedules takes: list | pause WORKFLOW | resume WORKFLOW");
      }
      method = "schedules." + sched_args[0];
      params["workflow"] = sched_args[1];
    } else if (sched_args.size() > 1) {
      return fail(kUsage, "schedules takes: list | pause WORKFLOW | resume WORKFLOW");
    }
    rc = call(o, method, params, result);
    if (rc == kOk && !o.json) {
      if (method != "schedules.list") {
        std::cout << "schedules of " << sched_args[1]
                  << (sched_args[0] == "pause" ? " paused" : " resumed") << "\n";
      } else {
        std::vector<std::vector<std::string>> rows{
            {"WORKFLOW", "#", "CRON", "TIMEZONE", "NEXT FIRE", "LAST FIRE", "PAUSED", "SKIPPED"}};
        for (const auto& sc : result["schedules"]) {
          rows.push_back(
              {text_of(sc["workflow"]), text_of(sc["schedule"]), text_of(sc["cron"]),
               text_of(sc["timezone"]),
               sc.value("loaded", true) ? when(o, sc.value("next_fire", json())) : "not loaded",
               when(o, sc.value("last_fire", json())), sc.value("paused", false) ? "yes" : "no",
               std::to_string(sc.value("skipped_overlap", 0) + sc.value("skipped_catchup", 0))});
        }
        std::cout << render_table(rows);
      }
    }
  } else if (plugins->parsed()) {
    rc = call(o, "plugins.list", json::object(), result);
    if (rc == kOk && !o.json) {
      for (const auto& p : result["plugins"]) {
        std::cout << bold(text_of(p["name"]), o.color) << " " << text_of(p["version"]) << " (ABI "
                  << text_of(p["abi"]) << ") " << text_of(p["file"]) << "\n";
        for (const auto& t : p["step_types"]) {
          std::cout << "  " << text_of(t["name"]) << ": " << text_of(t["description"]) << "\n";
          for (const auto& param : t["params"]) {
            const json& fallback = param.value("default", json());
            std::cout << "    " << text_of(param["name"]) << " (" << text_of(param["type"])
                      << (param["required"].get<bool>() ? ", required" : "")
                      << (fallback.is_null() ? "" : ", default " + fallback.dump())
                      << "): " << text_of(param["description"]) << "\n";
          }
        }
      }
      for (const auto& e : result["errors"])
        std::cout << "\nerror: " << escaped_lines(e.value("error", "")) << "\n";
    }
  } else if (stats->parsed()) {
    rc = call(o, "stats", json::object(), result);
    if (rc == kOk && prometheus) {
      std::cout << render_prometheus(result);
      return kOk;
    }
    if (rc == kOk && !o.json) print_stats(o, result);
  }
  if (o.json && !result.is_null()) std::cout << result.dump() << "\n";
  return rc;
}
