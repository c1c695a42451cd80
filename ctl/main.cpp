// sagactl: drives sagad over its Unix socket (DESIGN §7).
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "control/client.hpp"
#include "engine/time.hpp"
#include "plugin_host/plugin_registry.hpp"
#include "workflow/loader.hpp"

namespace {

using json = nlohmann::json;

constexpr int kOk = 0, kFailed = 1, kUsage = 2, kUnreachable = 3;

struct Options {
  std::string socket;
  bool json = false;
};

int fail(int code, const std::string& message) {
  std::cerr << "sagactl: " << message << "\n";
  return code;
}

std::string text_of(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

// Prints rows as aligned columns.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

void print_instance(const json& inst) {
  std::cout << "id:        " << text_of(inst["id"]) << "\n"
            << "workflow:  " << text_of(inst["workflow"]) << " (version "
            << text_of(inst["version"]) << ")\n"
            << "state:     " << text_of(inst["state"])
            << (inst["cause"].is_null() ? "" : " (cause " + text_of(inst["cause"]) + ")") << "\n"
            << "created:   " << text_of(inst["created_at"]) << "\n"
            << "updated:   " << text_of(inst["updated_at"]) << "\n\n";
  std::vector<std::vector<std::string>> rows{
      {"STEP", "STATE", "ATTEMPTS", "COMPENSATION", "ERROR"}};
  for (const auto& s : inst.value("steps", json::array())) {
    std::string comp = s["compensation"].value("state", "none");
    rows.push_back(
        {text_of(s["name"]), text_of(s["state"]), text_of(s["attempts"]),
         comp == "none" ? "-" : comp,
         s["error"].is_null() ? text_of(s["compensation"]["error"]) : text_of(s["error"])});
  }
  print_table(rows);
  if (inst.contains("history")) {
    std::cout << "\n";
    std::vector<std::vector<std::string>> hist{{"SEQ", "AT", "EVENT", "STEP", "DETAIL"}};
    for (const auto& e : inst["history"]) {
      std::string detail;
      for (const char* k : {"attempt", "error", "cause", "reason", "retry_at"}) {
        if (e.contains(k))
          detail += std::string(detail.empty() ? "" : " ") + k + "=" + text_of(e[k]);
      }
      hist.push_back({text_of(e["seq"]), text_of(e["at"]), text_of(e["type"]),
                      e.contains("step") ? text_of(e["step"]) : "-", detail});
    }
    print_table(hist);
  }
}

std::string socket_path(const Options& o) {
  if (!o.socket.empty()) return o.socket;
  if (const char* env = std::getenv("SAGA_SOCKET"); env && *env) return env;
  return "/run/saga/sagad.sock";
}

// Calls one method; prints errors; returns the exit code, and the result through `out`.
int call(const Options& o, const std::string& method, json params, json& out) {
  auto client = saga::rpc::Client::connect(socket_path(o));
  if (!client) return fail(kUnreachable, client.error().message);
  auto r = client->call(method, std::move(params));
  if (!r) {
    if (r.error().kind == saga::rpc::ClientError::Kind::transport) {
      return fail(kUnreachable, r.error().message);
    }
    if (o.json)
      std::cout
          << json{{"error", {{"code", r.error().code}, {"message", r.error().message}}}}.dump()
          << "\n";
    return fail(kFailed, r.error().message);
  }
  out = std::move(*r);
  return kOk;
}

std::optional<json> parse_object(const std::string& text, const std::string& what, int& code) {
  json v = json::parse(text, nullptr, false);
  if (v.is_discarded() || !v.is_object()) {
    code = fail(kUsage, what + " must be a JSON object, e.g. '{\"order_id\": 42}'");
    return std::nullopt;
  }
  return v;
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
      saga::StepSchema schema;
      static constexpr const char* kTypes[] = {"any",     "string", "integer", "number",
                                               "boolean", "array",  "object"};
      for (const auto& p : info->params) {
        auto t = static_cast<size_t>(p.type);
        schema.params.push_back({p.name, t < 7 ? kTypes[t] : "any", p.required});
      }
      schema.accepts_any_params = info->accepts_any_params;
      schema.can_compensate = info->can_compensate;
      return schema;
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
  json files_json = json::array();
  int rc = kOk;
  for (const auto& file : files) {
    auto def = saga::load_workflow_file(file, lookup);
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

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "sagactl: control the saga daemon\n\nExample: sagactl start hello --input '{\"name\": "
      "\"world\"}' --wait"};
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--socket", o.socket,
                 "sagad's socket (default $SAGA_SOCKET, then /run/saga/sagad.sock)");
  app.add_flag("--json", o.json, "print JSON for scripts");

  auto* ping =
      app.add_subcommand("ping", "daemon version, uptime and state dir\n\nExample: sagactl ping");

  std::string workflow, input_text, input_file, id;
  bool wait = false;
  auto* start = app.add_subcommand("start",
                                   "start an instance; prints its id\n\nExample: sagactl start "
                                   "hello --input '{\"name\": \"x\"}' --wait");
  start->add_option("workflow", workflow, "workflow name")->required();
  auto* input_opt = start->add_option("--input", input_text, "instance input, a JSON object");
  start->add_option("--input-file", input_file, "read the input from a file")->excludes(input_opt);
  start->add_option("--id", id, "instance id; starting an existing id returns that instance");
  start->add_flag("--wait", wait, "wait until the instance settles; exit 1 unless completed");

  std::string inspect_id;
  bool history = false;
  auto* inspect = app.add_subcommand(
      "inspect", "an instance's state, steps and errors\n\nExample: sagactl inspect ID --history");
  inspect->add_option("id", inspect_id, "instance id")->required();
  inspect->add_flag("--history", history, "include the journaled events");

  std::string state, wf_filter, cursor;
  int limit = 50;
  auto* list = app.add_subcommand(
      "list", "instances, newest first\n\nExample: sagactl list --state failed --limit 20");
  list->add_option("--state", state, "only instances in this state");
  list->add_option("--workflow", wf_filter, "only instances of this workflow");
  list->add_option("--limit", limit, "at most this many (1-1000)")->check(CLI::Range(1, 1000));
  list->add_option("--cursor", cursor, "the next_cursor of a previous page");

  std::string retry_id, from, retry_input;
  auto* retry = app.add_subcommand(
      "retry",
      "resume a failed or compensation_failed instance\n\nExample: sagactl retry ID --from charge");
  retry->add_option("id", retry_id, "instance id")->required();
  retry->add_option("--from", from, "re-run this step and everything downstream of it");
  retry->add_option("--input", retry_input, "replace the instance input (a JSON object)");

  std::string cancel_id, reason;
  auto* cancel = app.add_subcommand(
      "cancel",
      "cancel an instance and compensate\n\nExample: sagactl cancel ID --reason 'customer asked'");
  cancel->add_option("id", cancel_id, "instance id")->required();
  cancel->add_option("--reason", reason, "why, recorded in the journal");

  std::vector<std::string> wf_args;
  auto* workflows = app.add_subcommand(
      "workflows", "workflow definitions and load errors\n\nExample: sagactl workflows show hello");
  std::vector<std::string> validate_plugins;
  workflows->add_option("args", wf_args, "list | show NAME | validate FILE...");
  workflows->add_option("--plugins", validate_plugins,
                        "with validate: check step types against the plugins in DIR (repeatable)");

  std::vector<std::string> sched_args;
  auto* schedules = app.add_subcommand(
      "schedules",
      "schedules with their next and last fire times; pause or resume a workflow's schedules\n\n"
      "Example: sagactl schedules pause nightly-report");
  schedules->add_option("args", sched_args, "list | pause WORKFLOW | resume WORKFLOW");

  auto* plugins = app.add_subcommand("plugins", "loaded plugins and their step types");
  auto* stats = app.add_subcommand("stats", "counts, success rates, durations, journal latency");

  for (auto* sub : app.get_subcommands({})) {
    sub->add_option("--socket", o.socket, "sagad's socket");
    sub->add_flag("--json", o.json, "print JSON for scripts");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kUsage;
  }

  json result;
  int rc = kOk;
  if (ping->parsed()) {
    rc = call(o, "ping", json::object(), result);
    if (rc == kOk && !o.json) {
      std::cout << fmt::format("sagad {} (pid {}), up {} s, state in {}\n",
                               text_of(result["version"]), text_of(result["pid"]),
                               text_of(result["uptime_s"]), text_of(result["state_dir"]));
    }
  } else if (start->parsed()) {
    json params = {{"workflow", workflow}, {"wait", wait}};
    int code = kOk;
    if (!input_file.empty()) {
      std::ifstream in(input_file);
      if (!in) return fail(kUsage, "cannot read --input-file " + input_file);
      std::stringstream ss;
      ss << in.rdbuf();
      input_text = ss.str();
    }
    if (!input_text.empty()) {
      auto input = parse_object(input_text, "--input", code);
      if (!input) return code;
      params["input"] = *input;
    }
    if (!id.empty()) params["id"] = id;
    rc = call(o, "start", params, result);
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
        if (result.contains("instance")) print_instance(result["instance"]);
      }
    }
  } else if (inspect->parsed()) {
    rc = call(o, "inspect", {{"id", inspect_id}, {"history", history}}, result);
    if (rc == kOk && !o.json) print_instance(result);
  } else if (list->parsed()) {
    json params = {{"limit", limit}};
    if (!state.empty()) params["state"] = state;
    if (!wf_filter.empty()) params["workflow"] = wf_filter;
    if (!cursor.empty()) params["cursor"] = cursor;
    rc = call(o, "list", params, result);
    if (rc == kOk && !o.json) {
      std::vector<std::vector<std::string>> rows{{"ID", "WORKFLOW", "STATE", "CREATED"}};
      for (const auto& i : result["instances"]) {
        rows.push_back({text_of(i["id"]), text_of(i["workflow"]), text_of(i["state"]),
                        text_of(i["created_at"])});
      }
      print_table(rows);
      if (!result["next_cursor"].is_null()) {
        std::cout << "\nmore: sagactl list --cursor " << text_of(result["next_cursor"]) << "\n";
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
  } else if (workflows->parsed()) {
    if (wf_args.empty() || wf_args[0] == "list") {
      rc = call(o, "workflows.list", json::object(), result);
      if (rc == kOk && !o.json) {
        std::vector<std::vector<std::string>> rows{{"NAME", "VERSION", "STEPS", "FILE"}};
        for (const auto& w : result["workflows"]) {
          rows.push_back({text_of(w["name"]), text_of(w["version"]),
                          std::to_string(w["steps"].size()), text_of(w["file"])});
        }
        print_table(rows);
        for (const auto& e : result["errors"])
          std::cout << "\nerror: " << text_of(e["error"]) << "\n";
      }
    } else if (wf_args[0] == "validate" && wf_args.size() >= 2) {
      rc = validate(o, std::vector<std::string>(wf_args.begin() + 1, wf_args.end()),
                    validate_plugins, result);
    } else if (wf_args[0] == "show" && wf_args.size() == 2) {
      rc = call(o, "workflows.show", {{"name", wf_args[1]}}, result);
      if (rc == kOk && !o.json) std::cout << text_of(result["source"]);
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
               text_of(sc["timezone"]), text_of(sc["next_fire"]), text_of(sc["last_fire"]),
               sc.value("paused", false) ? "yes" : "no",
               std::to_string(sc.value("skipped_overlap", 0) + sc.value("skipped_catchup", 0))});
        }
        print_table(rows);
      }
    }
  } else if (plugins->parsed()) {
    rc = call(o, "plugins.list", json::object(), result);
    if (rc == kOk && !o.json) {
      for (const auto& p : result["plugins"]) {
        std::cout << text_of(p["name"]) << " " << text_of(p["version"]) << " (ABI "
                  << text_of(p["abi"]) << ") " << text_of(p["file"]) << "\n";
        for (const auto& t : p["step_types"]) {
          std::cout << "  " << text_of(t["name"]) << ": " << text_of(t["description"]) << "\n";
          for (const auto& param : t["params"]) {
            std::cout << "    " << text_of(param["name"]) << " (" << text_of(param["type"])
                      << (param["required"].get<bool>() ? ", required" : "")
                      << "): " << text_of(param["description"]) << "\n";
          }
        }
      }
    }
  } else if (stats->parsed()) {
    rc = call(o, "stats", json::object(), result);
    if (rc == kOk && !o.json) std::cout << result.dump(2) << "\n";
  }
  if (o.json && !result.is_null()) std::cout << result.dump() << "\n";
  return rc;
}
