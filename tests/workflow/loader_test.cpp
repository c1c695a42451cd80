#include "workflow/loader.hpp"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace saga;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

// Step types as a plugin registry would describe them.
std::optional<StepSchema> test_schemas(const std::string& uses) {
  if (uses == "exec") {
    return StepSchema{{{"argv", "array", true},
                       {"env", "object", false},
                       {"cwd", "string", false},
                       {"stdin", "any", false}},
                      false,
                      true};
  }
  if (uses == "http") {
    return StepSchema{{{"method", "string", false},
                       {"url", "string", false},
                       {"json", "any", false},
                       {"headers", "object", false},
                       {"expect", "array", false}},
                      false,
                      false};
  }
  if (uses == "sleep") {
    return StepSchema{
        {{"ms", "integer", true}, {"ratio", "number", false}, {"loud", "boolean", false}},
        false,
        false};
  }
  if (uses == "noop") return StepSchema{{}, false, true};
  if (uses == "echo") return StepSchema{{}, true, false};
  return std::nullopt;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The error lines of a workflow that must fail to load.
std::vector<std::string> errors_of(const std::string& yaml,
                                   const StepSchemaLookup& lookup = test_schemas) {
  auto r = load_workflow(yaml, "wf.yaml", lookup);
  if (r) FAIL("loaded, but should have failed:\n" << yaml);
  CHECK(r.error().code == ErrorCode::invalid_argument);
  return lines_of(r.error().message);
}

Definition load_ok(const std::string& yaml, const StepSchemaLookup& lookup = test_schemas) {
  auto r = load_workflow(yaml, "wf.yaml", lookup);
  if (!r) FAIL("failed to load:\n" << r.error().message);
  return std::move(*r);
}

struct ErrorCase {
  const char* what;
  const char* yaml;
  std::vector<std::string> want;  // every error line, in order
};

void check_cases(const std::vector<ErrorCase>& cases) {
  for (const ErrorCase& c : cases) {
    SECTION(c.what) {
      INFO(c.yaml);
      CHECK(errors_of(c.yaml) == c.want);
    }
  }
}

constexpr const char* kFull = R"(name: order-checkout            # unique
description: Reserve stock, charge the card, ship
on_failure: compensate
timeout: 30m
max_parallel: 4
input:
  required: [order_id]
defaults:
  retry: {max_attempts: 3, initial_interval: 1s, backoff: 2.0, max_interval: 1m}
  timeout: 5m
steps:
  - name: reserve
    uses: exec
    with:
      argv: ["/usr/lib/shop/reserve", "${{ input.order_id }}"]
    compensate:
      uses: exec
      with: {argv: ["/usr/lib/shop/release", "${{ steps.reserve.output.reservation }}"]}
  - name: charge
    uses: http
    with: {method: POST, url: "http://127.0.0.1:8080/pay", json: {order: "${{ input.order_id }}"}}
    retry: {max_attempts: 5}
    timeout: 10s
  - name: notify
    uses: http
    depends_on: [charge]
    continue_on_failure: true
)";

}  // namespace

TEST_CASE("the full example of DESIGN section 3 loads with its values", "[loader]") {
  const Definition d = load_ok(kFull);
  CHECK(d.name == "order-checkout");
  CHECK(d.description == "Reserve stock, charge the card, ship");
  CHECK(d.on_failure == OnFailure::compensate);
  CHECK(d.timeout == 30min);
  CHECK(d.max_parallel == 4);
  CHECK(d.required_input == std::vector<std::string>{"order_id"});
  CHECK(d.file == "wf.yaml");
  CHECK(d.source == kFull);
  CHECK(d.version == definition_version(kFull));
  REQUIRE(d.steps.size() == 3);

  const StepDef& reserve = d.steps[0];
  CHECK(reserve.name == "reserve");
  CHECK(reserve.run.uses == "exec");
  CHECK(reserve.run.with ==
        json::parse(R"({"argv": ["/usr/lib/shop/reserve", "${{ input.order_id }}"]})"));
  REQUIRE(reserve.compensate);
  CHECK(reserve.compensate->uses == "exec");
  CHECK(reserve.compensate->with ==
        json::parse(
            R"({"argv": ["/usr/lib/shop/release", "${{ steps.reserve.output.reservation }}"]})"));
  CHECK(reserve.depends_on.empty());
  CHECK(reserve.retry.max_attempts == 3);
  CHECK(reserve.timeout == 5min);
  CHECK_FALSE(reserve.continue_on_failure);

  const StepDef& charge = d.steps[1];
  CHECK(charge.run.uses == "http");
  CHECK(charge.run.with == json::parse(R"({"method": "POST", "url": "http://127.0.0.1:8080/pay",
                                           "json": {"order": "${{ input.order_id }}"}})"));
  CHECK_FALSE(charge.compensate);
  CHECK(charge.depends_on == std::vector<uint32_t>{0});
  CHECK(charge.retry.max_attempts == 5);
  CHECK(charge.retry.initial_interval == 1s);
  CHECK(charge.retry.backoff == 2.0);
  CHECK(charge.retry.max_interval == 1min);
  CHECK(charge.timeout == 10s);

  const StepDef& notify = d.steps[2];
  CHECK(notify.run.with == json::object());
  CHECK(notify.depends_on == std::vector<uint32_t>{1});
  CHECK(notify.continue_on_failure);
  CHECK(notify.timeout == 5min);
}

TEST_CASE("the bare minimum gets the built-in defaults", "[loader]") {
  const Definition d = load_ok("name: tiny\nsteps:\n  - {name: only, uses: noop}\n");
  CHECK(d.description.empty());
  CHECK(d.on_failure == OnFailure::compensate);
  CHECK_FALSE(d.timeout);
  CHECK(d.max_parallel == 8);
  CHECK(d.required_input.empty());
  REQUIRE(d.steps.size() == 1);
  const RetryPolicy& r = d.steps[0].retry;
  CHECK(r.max_attempts == 3);
  CHECK(r.initial_interval == 1s);
  CHECK(r.backoff == 2.0);
  CHECK(r.max_interval == 1min);
  CHECK(r.jitter == 0.0);
  CHECK_FALSE(d.steps[0].timeout);
  CHECK(d.steps[0].run.with == json::object());
}

TEST_CASE("retry fields come from the step, then defaults.retry, then the built-in", "[loader]") {
  const Definition d = load_ok(R"(name: retries
on_failure: halt
defaults:
  retry: {initial_interval: 2s, jitter: 0.5}
steps:
  - name: a
    uses: noop
    retry: {max_attempts: 5, backoff: 1.5, jitter: 0}
  - name: b
    uses: noop
    retry:
      max_interval: 90s
  - name: c
    uses: noop
)");
  CHECK(d.on_failure == OnFailure::halt);
  const RetryPolicy& a = d.steps[0].retry;
  CHECK(a.max_attempts == 5);
  CHECK(a.initial_interval == 2s);
  CHECK(a.backoff == 1.5);
  CHECK(a.max_interval == 1min);
  CHECK(a.jitter == 0.0);
  const RetryPolicy& b = d.steps[1].retry;
  CHECK(b.max_attempts == 3);
  CHECK(b.initial_interval == 2s);
  CHECK(b.backoff == 2.0);
  CHECK(b.max_interval == 90s);
  CHECK(b.jitter == 0.5);
  const RetryPolicy& c = d.steps[2].retry;
  CHECK(c.initial_interval == 2s);
  CHECK(c.jitter == 0.5);
  CHECK(c.max_attempts == 3);
}

TEST_CASE("a first retry delay longer than max_interval is refused, naming where each came from",
          "[loader]") {
  check_cases({
      {"both in the step",
       R"(name: a
steps:
  - name: s
    uses: noop
    retry: {initial_interval: 10m, max_interval: 5m}
)",
       {"wf.yaml:5:31: \"retry.initial_interval\" of step \"s\" (10m) is longer than "
        "\"retry.max_interval\" (5m); make max_interval at least as long as initial_interval"}},
      {"the step's first delay against the defaults' cap",
       R"(name: a
defaults:
  retry: {max_interval: 30s}
steps:
  - name: s
    uses: noop
    retry: {initial_interval: 1m}
  - name: t
    uses: noop
    retry: {initial_interval: 30s}
)",
       {"wf.yaml:7:31: \"retry.initial_interval\" of step \"s\" (1m) is longer than "
        "\"defaults.retry.max_interval\" (30s); make max_interval at least as long as "
        "initial_interval"}},
      {"the defaults' first delay against the built-in cap, said once",
       R"(name: a
defaults:
  retry: {initial_interval: 2m}
steps:
  - {name: s, uses: noop}
  - {name: t, uses: noop}
)",
       {"wf.yaml:3:29: \"defaults.retry.initial_interval\" (2m) is longer than the default "
        "max_interval (1m); make max_interval at least as long as initial_interval"}},
  });
  // A step that sets its own cap is not held to the defaults' first delay.
  const Definition d = load_ok(R"(name: a
defaults:
  retry: {initial_interval: 2m}
steps:
  - name: s
    uses: noop
    retry: {max_interval: 2m}
)");
  CHECK(d.steps[0].retry.initial_interval == 2min);
  CHECK(d.steps[0].retry.max_interval == 2min);
}

TEST_CASE("depends_on: absent means the previous step, [] means none", "[loader]") {
  const Definition d = load_ok(R"(name: dag
steps:
  - {name: a, uses: noop}
  - {name: b, uses: noop}
  - {name: c, uses: noop, depends_on: []}
  - {name: d, uses: noop, depends_on: [a, c, a]}
  - {name: e, uses: noop}
)");
  CHECK(d.steps[0].depends_on.empty());
  CHECK(d.steps[1].depends_on == std::vector<uint32_t>{0});
  CHECK(d.steps[2].depends_on.empty());
  CHECK(d.steps[3].depends_on == std::vector<uint32_t>{0, 2});
  CHECK(d.steps[4].depends_on == std::vector<uint32_t>{3});
  CHECK(d.step_index("c") == 2u);
}

TEST_CASE("with: keeps YAML scalar types, quoted scalars stay strings", "[loader]") {
  const Definition d = load_ok(R"(name: types
steps:
  - name: a
    uses: echo
    with:
      int: 42
      neg: -7
      hex: 0x1F
      oct: 0o17
      big: 18446744073709551615
      float: 1.5
      exp: 1e3
      yes_bool: true
      no_bool: False
      null1: null
      null2: ~
      null3:
      str: hello world
      quoted_int: "42"
      single_true: 'true'
      quoted_null: "null"
      tagged: !!str 7
      word_yes: yes
      version: 1.2.3
      block: |
        line one
        line two
      list: [1, "2", three, {k: v}]
      nested: {a: {b: [true, ~]}}
)");
  const json& w = d.steps[0].run.with;
  CHECK(w["int"] == json(42));
  CHECK(w["int"].is_number_integer());
  CHECK(w["neg"] == json(-7));
  CHECK(w["hex"] == json(31));
  CHECK(w["oct"] == json(15));
  CHECK(w["big"] == json(18446744073709551615ULL));
  CHECK(w["float"] == json(1.5));
  CHECK(w["exp"] == json(1000.0));
  CHECK(w["exp"].is_number_float());
  CHECK(w["yes_bool"] == json(true));
  CHECK(w["no_bool"] == json(false));
  CHECK(w["null1"].is_null());
  CHECK(w["null2"].is_null());
  CHECK(w["null3"].is_null());
  CHECK(w["str"] == json("hello world"));
  CHECK(w["quoted_int"] == json("42"));
  CHECK(w["single_true"] == json("true"));
  CHECK(w["quoted_null"] == json("null"));
  CHECK(w["tagged"] == json("7"));
  // YAML 1.2: "yes" is a string, not a boolean.
  CHECK(w["word_yes"] == json("yes"));
  CHECK(w["version"] == json("1.2.3"));
  CHECK(w["block"] == json("line one\nline two\n"));
  CHECK(w["list"] == json::parse(R"([1, "2", "three", {"k": "v"}])"));
  CHECK(w["nested"] == json::parse(R"({"a": {"b": [true, null]}})"));
}

TEST_CASE("without a lookup, uses and with are checked for shape only", "[loader]") {
  const Definition d = load_ok(R"(name: shape
steps:
  - name: a
    uses: anything.goes
    with: {whatever: 1}
    compensate: {uses: also.unknown}
)",
                               nullptr);
  CHECK(d.steps[0].run.uses == "anything.goes");
  CHECK(d.steps[0].compensate->uses == "also.unknown");
}

TEST_CASE("valid templates: upstream steps, transitive ones, own output in compensation",
          "[loader]") {
  load_ok(R"(name: templates
steps:
  - name: a
    uses: echo
  - name: b.v2
    uses: echo
    with: {x: "${{ steps.a.output.id }}"}
  - name: c
    uses: echo
    depends_on: [b.v2]
    with:
      from_a: "${{ steps.a.output }}"
      from_b: "id=${{ steps.b.v2.output.items.0.id }}"
      misc: ["${{ input }}", "${{ instance.id }}", "${{ workflow.name }}", "${{ secrets.token }}"]
    compensate:
      uses: exec
      with: {argv: ["undo", "${{ steps.c.output.id }}", "${{ steps.a.output.id }}"]}
)");
}

TEST_CASE("a template in a parameter skips its type check", "[loader]") {
  const Definition d = load_ok(R"(name: typed
steps:
  - name: a
    uses: sleep
    with: {ms: "${{ input.delay }}", ratio: 2, loud: false}
)");
  CHECK(d.steps[0].run.with["ms"] == json("${{ input.delay }}"));
}

TEST_CASE("document-level errors", "[loader]") {
  check_cases({
      {"syntax error",
       "name: x\nsteps: [a, b\n",
       {"wf.yaml:3:1: YAML syntax error: end of sequence flow not found"}},
      {"syntax error mid-line",
       "name: x\nsteps: {a: b: c}\n",
       {"wf.yaml:2:13: YAML syntax error: end of map flow not found"}},
      {"undefined alias",
       "name: *nope\n",
       {"wf.yaml:1:7: YAML syntax error: the referenced anchor is not defined"}},
      {"empty document",
       "# nothing here\n",
       {"wf.yaml:1:1: the workflow is empty; it needs at least \"name\" and \"steps\""}},
      {"empty file",
       "",
       {"wf.yaml:1:1: the workflow is empty; it needs at least \"name\" and \"steps\""}},
      {"two documents",
       "name: a\nsteps: [{name: a, uses: noop}]\n---\nname: b\n",
       {"wf.yaml:4:1: a file holds one workflow, but a second YAML document starts here; move it "
        "to its own file"}},
      {"not a mapping",
       "- name: x\n",
       {"wf.yaml:1:1: a workflow must be a mapping with \"name\" and \"steps\", not a list"}},
  });
}

TEST_CASE("YAML nested past what the reader takes is refused as such", "[loader]") {
  const std::string yaml =
      "name: x\nsteps: " + std::string(1200, '[') + std::string(1200, ']') + "\n";
  CHECK(errors_of(yaml) ==
        std::vector<std::string>{"wf.yaml:2:2408: lists and mappings are nested too deeply here "
                                 "for the YAML reader; flatten them"});
}

TEST_CASE("top-level errors", "[loader]") {
  check_cases({
      {"unknown key",
       "name: wf\ncolour: blue\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:1: unknown key \"colour\" at the top level; allowed keys: name, description, "
        "on_failure, timeout, max_parallel, input, defaults, schedule, steps"}},
      {"missing name and steps",
       "description: nothing else\n",
       {"wf.yaml:1:1: missing required key \"name\": every workflow needs a name",
        "wf.yaml:1:1: missing required key \"steps\": a workflow needs a list of steps"}},
      {"bad workflow name",
       "name: Order_Checkout\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:1:7: invalid workflow name \"Order_Checkout\"; use 1 to 64 characters from a-z, "
        "0-9, '.', '_' and '-', starting with a letter or digit"}},
      {"name too long",
       "name: a12345678901234567890123456789012345678901234567890123456789012345\n"
       "steps: [{name: a, uses: noop}]\n",
       {"wf.yaml:1:7: invalid workflow name "
        "\"a12345678901234567890123456789012345678901234567890123456789...\"; use 1 to 64 "
        "characters from a-z, 0-9, '.', '_' and '-', starting with a letter or digit"}},
      {"name of the wrong type",
       "name: [a]\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:1:7: \"name\" must be a string, not a list"}},
      {"duplicate key",
       "name: a\nname: b\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:1: duplicate key \"name\" at the top level; it is already set at line 1"}},
      {"on_failure value",
       "name: a\non_failure: stop\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:13: \"on_failure\" must be compensate or halt, not \"stop\""}},
      {"max_parallel not a number",
       "name: a\nmax_parallel: four\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:15: \"max_parallel\" must be a whole number from 1 to 4294967295, not the "
        "string \"four\""}},
      {"max_parallel zero",
       "name: a\nmax_parallel: 0\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:15: \"max_parallel\" must be a whole number from 1 to 4294967295, not 0"}},
      {"max_parallel float",
       "name: a\nmax_parallel: 2.5\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:15: \"max_parallel\" must be a whole number from 1 to 4294967295, not the "
        "number 2.5"}},
      {"max_parallel quoted",
       "name: a\nmax_parallel: \"2\"\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:15: \"max_parallel\" must be a whole number from 1 to 4294967295, not the "
        "string \"2\""}},
      {"max_parallel too big",
       "name: a\nmax_parallel: 4294967296\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:15: \"max_parallel\" must be a whole number from 1 to 4294967295, not "
        "4294967296"}},
      {"bad timeout",
       "name: a\ntimeout: 5x\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:10: \"timeout\" has a bad duration \"5x\"; a duration is a number and a unit "
        "(ms, s, m, h, d), largest unit first, such as 250ms, 10s or 1h30m, and at most 36500d"}},
      {"zero timeout",
       "name: a\ntimeout: 0s\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:10: \"timeout\" must be longer than 0"}},
      {"empty timeout points at the key",
       "name: a\ntimeout:\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:1: \"timeout\" must be a duration, not nothing; a duration is a number and a "
        "unit (ms, s, m, h, d), largest unit first, such as 250ms, 10s or 1h30m, and at most "
        "36500d"}},
      {"input not a mapping",
       "name: a\ninput: [order_id]\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:8: \"input\" must be a mapping, not a list"}},
      {"input unknown key",
       "name: a\ninput: {optional: [x]}\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:9: unknown key \"optional\" in \"input\"; allowed keys: required"}},
      {"input.required not a list",
       "name: a\ninput: {required: x}\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:19: \"input.required\" must be a list of input keys, not the string \"x\""}},
      {"steps missing a list",
       "name: a\nsteps: {a: 1}\n",
       {"wf.yaml:2:8: \"steps\" must be a list of steps, not a mapping"}},
      {"steps empty",
       "name: a\nsteps: []\n",
       {"wf.yaml:2:8: \"steps\" must list at least one step"}},
  });
}

TEST_CASE("defaults and retry errors", "[loader]") {
  check_cases({
      {"defaults unknown key",
       "name: a\ndefaults:\n  retries: 3\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:3:3: unknown key \"retries\" in \"defaults\"; allowed keys: retry, timeout"}},
      {"defaults.timeout",
       "name: a\ndefaults:\n  timeout: forever\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:3:12: \"defaults.timeout\" has a bad duration \"forever\"; a duration is a number "
        "and a unit (ms, s, m, h, d), largest unit first, such as 250ms, 10s or 1h30m, and at most "
        "36500d"}},
      {"defaults.retry fields",
       R"(name: a
defaults:
  retry:
    max_attempts: 0
    initial_interval: 1.5s
    backoff: 0.5
    max_interval: [1m]
    jitter: 1.5
    limit: 3
steps: [{name: a, uses: noop}]
)",
       {"wf.yaml:4:19: \"defaults.retry.max_attempts\" must be a whole number from 1 to "
        "4294967295, not 0",
        "wf.yaml:5:23: \"defaults.retry.initial_interval\" has a bad duration \"1.5s\"; a "
        "duration is a number and a unit (ms, s, m, h, d), largest unit first, such as 250ms, 10s "
        "or 1h30m, and at most 36500d",
        "wf.yaml:6:14: \"defaults.retry.backoff\" must be a number of at least 1.0, not 0.5",
        "wf.yaml:7:19: \"defaults.retry.max_interval\" must be a duration, not a list; a duration "
        "is a number and a unit (ms, s, m, h, d), largest unit first, such as 250ms, 10s or 1h30m, "
        "and at most 36500d",
        "wf.yaml:8:13: \"defaults.retry.jitter\" must be a number from 0.0 to 1.0, not 1.5",
        "wf.yaml:9:5: unknown key \"limit\" in \"defaults.retry\"; allowed keys: max_attempts, "
        "initial_interval, backoff, max_interval, jitter"}},
      {"step retry",
       R"(name: a
steps:
  - name: s
    uses: noop
    retry: {max_attempts: many, jitter: .nan, backoff: .inf}
)",
       {"wf.yaml:5:27: \"retry.max_attempts\" of step \"s\" must be a whole number from 1 to "
        "4294967295, not the string \"many\"",
        "wf.yaml:5:41: \"retry.jitter\" of step \"s\" must be a number from 0.0 to 1.0, not .nan",
        "wf.yaml:5:56: \"retry.backoff\" of step \"s\" must be a number of at least 1.0, not "
        ".inf"}},
      {"retry not a mapping",
       "name: a\nsteps:\n  - {name: s, uses: noop, retry: 3}\n",
       {"wf.yaml:3:34: \"retry\" of step \"s\" must be a mapping, not the integer 3"}},
  });
}

TEST_CASE("step errors", "[loader]") {
  check_cases({
      {"unknown step key",
       "name: a\nsteps:\n  - name: s\n    uses: noop\n    retries: 3\n",
       {"wf.yaml:5:5: unknown key \"retries\" in step \"s\"; allowed keys: name, uses, with, "
        "compensate, depends_on, retry, timeout, continue_on_failure"}},
      {"missing name and uses",
       "name: a\nsteps:\n  - with: {}\n",
       {"wf.yaml:3:5: step 1 has no \"name\"; every step needs a unique name",
        "wf.yaml:3:5: step 1 has no \"uses\"; name the step type it runs"}},
      {"step not a mapping",
       "name: a\nsteps:\n  - noop\n",
       {"wf.yaml:3:5: step 1 must be a mapping with \"name\" and \"uses\", not the string "
        "\"noop\""}},
      {"bad step name",
       "name: a\nsteps:\n  - {name: -a, uses: noop}\n",
       {"wf.yaml:3:12: invalid step name \"-a\"; use 1 to 64 characters from a-z, 0-9, '.', '_' "
        "and '-', starting with a letter or digit"}},
      {"a step name templates could not name",
       "name: a\nsteps:\n  - {name: x.output, uses: noop}\n  - {name: y.output.z, uses: noop}\n",
       {"wf.yaml:3:12: step name \"x.output\" cannot be named in templates, which read its "
        "\".output\" as the start of steps.NAME.output; rename the step so that no part after a "
        "dot is \"output\"",
        "wf.yaml:4:12: step name \"y.output.z\" cannot be named in templates, which read its "
        "\".output\" as the start of steps.NAME.output; rename the step so that no part after a "
        "dot is \"output\""}},
      {"duplicate step names",
       "name: a\nsteps:\n  - name: s\n    uses: noop\n  - name: t\n    uses: noop\n"
       "  - name: s\n    uses: noop\n",
       {"wf.yaml:7:11: duplicate step name \"s\"; the first step with this name is at line 3"}},
      {"continue_on_failure yes",
       "name: a\nsteps:\n  - {name: s, uses: noop, continue_on_failure: yes}\n",
       {"wf.yaml:3:48: \"continue_on_failure\" of step \"s\" must be true or false, not the string "
        "\"yes\""}},
      {"step timeout",
       "name: a\nsteps:\n  - {name: s, uses: noop, timeout: 1h1h}\n",
       {"wf.yaml:3:36: \"timeout\" of step \"s\" has a bad duration \"1h1h\"; a duration is a "
        "number and a unit (ms, s, m, h, d), largest unit first, such as 250ms, 10s or 1h30m, and "
        "at most 36500d"}},
      {"with not a mapping",
       "name: a\nsteps:\n  - {name: s, uses: echo, with: [1, 2]}\n",
       {"wf.yaml:3:33: \"with\" of step \"s\" must be a mapping, not a list"}},
      {"uses not a string",
       "name: a\nsteps:\n  - {name: s, uses: {x: 1}}\n",
       {"wf.yaml:3:21: \"uses\" of step \"s\" must be a string, not a mapping"}},
      {"duplicate key in with",
       "name: a\nsteps:\n  - name: s\n    uses: echo\n    with:\n      k: 1\n      k: 2\n",
       {"wf.yaml:7:7: duplicate key \"k\"; it is already set at line 6"}},
      {"compensate not a mapping",
       "name: a\nsteps:\n  - {name: s, uses: noop, compensate: noop}\n",
       {"wf.yaml:3:39: \"compensate\" of step \"s\" must be a mapping with \"uses\" and \"with\", "
        "not the string \"noop\""}},
      {"compensate without uses and with an unknown key",
       "name: a\nsteps:\n  - name: s\n    uses: noop\n    compensate:\n      run: undo\n",
       {"wf.yaml:5:5: \"compensate\" of step \"s\" has no \"uses\"; name the step type that undoes "
        "it",
        "wf.yaml:6:7: unknown key \"run\" in \"compensate\" of step \"s\"; allowed keys: uses, "
        "with"}},
  });
}

TEST_CASE("step type and parameter errors", "[loader]") {
  check_cases({
      {"unknown uses",
       "name: a\nsteps:\n  - {name: s, uses: exce}\n",
       {"wf.yaml:3:21: unknown step type \"exce\" in \"uses\" of step \"s\"; is the plugin that "
        "provides it installed?"}},
      {"unknown compensate uses",
       "name: a\nsteps:\n  - name: s\n    uses: noop\n    compensate: {uses: undo}\n",
       {"wf.yaml:5:24: unknown step type \"undo\" in \"compensate.uses\" of step \"s\"; is the "
        "plugin that provides it installed?"}},
      {"unknown parameter",
       "name: a\nsteps:\n  - name: s\n    uses: exec\n    with:\n      argv: [x]\n      args: "
       "[y]\n",
       {"wf.yaml:7:7: unknown parameter \"args\" for step type \"exec\" in \"with\" of step \"s\"; "
        "its parameters are: argv, env, cwd, stdin"}},
      {"parameter for a type that takes none",
       "name: a\nsteps:\n  - {name: s, uses: noop, with: {x: 1}}\n",
       {"wf.yaml:3:34: unknown parameter \"x\" for step type \"noop\" in \"with\" of step \"s\"; "
        "it "
        "takes no parameters"}},
      {"missing required parameter, with present",
       "name: a\nsteps:\n  - name: s\n    uses: exec\n    with: {cwd: /tmp}\n",
       {"wf.yaml:5:11: missing required parameter \"argv\" of step type \"exec\" in \"with\" of "
        "step \"s\""}},
      {"missing required parameter, no with",
       "name: a\nsteps:\n  - name: s\n    uses: sleep\n",
       {"wf.yaml:4:11: missing required parameter \"ms\" of step type \"sleep\" in \"with\" of "
        "step \"s\""}},
      {"wrong parameter types",
       R"(name: a
steps:
  - name: s
    uses: sleep
    with:
      ms: 1.5
      ratio: fast
      loud: "true"
  - name: t
    uses: exec
    with: {argv: /bin/true, env: [A], cwd: 42}
)",
       {"wf.yaml:6:11: parameter \"ms\" of step type \"sleep\" must be an integer, not the number "
        "1.5",
        "wf.yaml:7:14: parameter \"ratio\" of step type \"sleep\" must be a number, not the string "
        "\"fast\"",
        "wf.yaml:8:13: parameter \"loud\" of step type \"sleep\" must be true or false, not the "
        "string \"true\"",
        "wf.yaml:11:18: parameter \"argv\" of step type \"exec\" must be a list, not the string "
        "\"/bin/true\"",
        "wf.yaml:11:34: parameter \"env\" of step type \"exec\" must be a mapping, not a list",
        "wf.yaml:11:44: parameter \"cwd\" of step type \"exec\" must be a string, not the integer "
        "42 (quote it to pass it as a string)"}},
      {"compensate with a type that cannot compensate",
       "name: a\nsteps:\n  - name: s\n    uses: noop\n    compensate:\n      uses: http\n",
       {"wf.yaml:6:13: step type \"http\" cannot compensate, so it cannot be used in "
        "\"compensate\" of step \"s\""}},
      {"compensate parameters are checked too",
       "name: a\nsteps:\n  - name: s\n    uses: noop\n    compensate:\n      uses: exec\n",
       {"wf.yaml:6:13: missing required parameter \"argv\" of step type \"exec\" in "
        "\"compensate.with\" of step \"s\""}},
  });
}

TEST_CASE("dependency errors", "[loader]") {
  check_cases({
      {"depends_on a missing step",
       "name: a\nsteps:\n  - {name: a, uses: noop}\n  - {name: b, uses: noop, depends_on: [a, "
       "z]}\n",
       {"wf.yaml:4:43: step \"b\" depends on \"z\", which is not a step of this workflow"}},
      {"depends_on a scalar",
       "name: a\nsteps:\n  - {name: a, uses: noop}\n  - {name: b, uses: noop, depends_on: a}\n",
       {"wf.yaml:4:39: \"depends_on\" of step \"b\" must be a list of step names; write [a]"}},
      {"two-step cycle",
       R"(name: a
steps:
  - name: a
    uses: noop
    depends_on: [b]
  - name: b
    uses: noop
)",
       {"wf.yaml:5:17: dependency cycle: a -> b -> a (each step depends on the next)"}},
      {"self cycle",
       "name: a\nsteps:\n  - {name: a, uses: noop, depends_on: [a]}\n",
       {"wf.yaml:3:39: dependency cycle: a -> a (each step depends on the next)"}},
      {"three-step cycle",
       R"(name: a
steps:
  - {name: a, uses: noop, depends_on: [c]}
  - {name: b, uses: noop, depends_on: [a]}
  - {name: c, uses: noop, depends_on: [b]}
  - {name: d, uses: noop, depends_on: []}
)",
       {"wf.yaml:3:39: dependency cycle: a -> c -> b -> a (each step depends on the next)"}},
  });
}

TEST_CASE("template errors", "[loader]") {
  check_cases({
      {"malformed",
       "name: a\nsteps:\n  - name: s\n    uses: echo\n    with: {x: \"${{ input.x \", y: "
       "\"${{ a + b }}\"}\n",
       {"wf.yaml:5:15: template \"${{ input.x \" is not closed with }}",
        "wf.yaml:5:34: template \"${{ a + b }}\" is not a dotted path: templates are path lookups "
        "only, such as ${{ steps.NAME.output.field }}, made of letters, digits, '_' and '-' "
        "separated by '.'"}},
      {"unknown root",
       "name: a\nsteps:\n  - name: s\n    uses: echo\n    with:\n      x: ${{ env.HOME }}\n",
       {"wf.yaml:6:10: template ${{ env.HOME }} uses unknown name \"env\"; templates can use "
        "input, steps.NAME.output, instance.id, workflow.name, schedule.fire_time and "
        "secrets.NAME"}},
      {"bad instance, workflow and secrets fields",
       R"(name: a
steps:
  - name: s
    uses: echo
    with:
      a: "${{ instance.name }}"
      b: "${{ workflow.version }}"
      c: "${{ secrets.a.b }}"
      d: "${{ steps.s }}"
)",
       {"wf.yaml:6:10: template ${{ instance.name }}: the only instance field is id (${{ "
        "instance.id }})",
        "wf.yaml:7:10: template ${{ workflow.version }}: the only workflow field is name (${{ "
        "workflow.name }})",
        "wf.yaml:8:10: template ${{ secrets.a.b }}: a secret is named by one word, as in ${{ "
        "secrets.NAME }}",
        "wf.yaml:9:10: template ${{ steps.s }}: write steps.NAME.output to use a step's output"}},
      {"missing step",
       "name: a\nsteps:\n  - name: s\n    uses: echo\n    with: {x: \"${{ steps.gone.output.id "
       "}}\"}\n",
       {"wf.yaml:5:15: template ${{ steps.gone.output.id }} in step \"s\" names step \"gone\", "
        "which is not a step of this workflow"}},
      {"not upstream: a later step",
       R"(name: a
steps:
  - name: first
    uses: echo
    with: {x: "${{ steps.second.output.id }}"}
  - name: second
    uses: echo
)",
       {"wf.yaml:5:15: template ${{ steps.second.output.id }} in step \"first\" uses step "
        "\"second\", which is not upstream of it; add \"second\" to its depends_on"}},
      {"not upstream: a parallel branch",
       R"(name: a
steps:
  - {name: root, uses: echo}
  - {name: left, uses: echo, depends_on: [root]}
  - name: right
    uses: echo
    depends_on: [root]
    with: {x: "${{ steps.left.output.id }}", y: "${{ steps.root.output.id }}"}
)",
       {"wf.yaml:8:15: template ${{ steps.left.output.id }} in step \"right\" uses step \"left\", "
        "which is not upstream of it; add \"left\" to its depends_on"}},
      {"own output in run",
       "name: a\nsteps:\n  - name: s\n    uses: echo\n    with: {x: \"${{ steps.s.output.id "
       "}}\"}\n",
       {"wf.yaml:5:15: template ${{ steps.s.output.id }} in step \"s\" uses the step's own output, "
        "which does not exist yet"}},
      {"compensation uses a downstream step",
       R"(name: a
steps:
  - name: reserve
    uses: noop
    compensate:
      uses: exec
      with: {argv: ["release", "${{ steps.charge.output.id }}"]}
  - name: charge
    uses: noop
)",
       {"wf.yaml:7:32: template ${{ steps.charge.output.id }} in the compensation of step "
        "\"reserve\" uses step \"charge\", which is not upstream of it; add \"charge\" to its "
        "depends_on"}},
  });
}

TEST_CASE("every problem is reported at once, in file order", "[loader]") {
  const auto errors = errors_of(R"(name: Bad
timeout: soon
steps:
  - name: a
    uses: nope
    depends_on: [missing]
  - name: a
    uses: exec
    with: {argv: [x], extra: 1}
)");
  CHECK(errors == std::vector<std::string>{
                      "wf.yaml:1:7: invalid workflow name \"Bad\"; use 1 to 64 characters from "
                      "a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
                      "wf.yaml:2:10: \"timeout\" has a bad duration \"soon\"; a duration is a "
                      "number and a unit (ms, s, m, h, d), largest unit first, such as 250ms, 10s "
                      "or 1h30m, and at most 36500d",
                      "wf.yaml:5:11: unknown step type \"nope\" in \"uses\" of step \"a\"; is the "
                      "plugin that provides it installed?",
                      "wf.yaml:6:18: step \"a\" depends on \"missing\", which is not a step of "
                      "this workflow",
                      "wf.yaml:7:11: duplicate step name \"a\"; the first step with this name is "
                      "at line 4",
                      "wf.yaml:9:23: unknown parameter \"extra\" for step type \"exec\" in "
                      "\"with\" of step \"a\"; its parameters are: argv, env, cwd, stdin",
                  });
}

TEST_CASE("aliases that expand without bound are refused", "[loader]") {
  // Ten lists of ten references each to the previous one: 10^8 values once expanded.
  std::string yaml = "name: a\nsteps:\n  - name: s\n    uses: echo\n    with:\n";
  yaml += "      l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 8; ++i) {
    const std::string prev = "*l" + std::to_string(i - 1);
    yaml += "      l" + std::to_string(i) + ": &l" + std::to_string(i) + " [" + prev;
    for (int j = 0; j < 9; ++j) yaml += ", " + prev;
    yaml += "]\n";
  }
  const auto errors = errors_of(yaml);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("expands to more than 1000000 values") != std::string::npos);
}

TEST_CASE("aliases of long strings that expand past 16 MiB are refused", "[loader]") {
  // One 64 KiB string, referenced 100 x 10 times: a 100 KiB file, 64 MiB once expanded, in
  // far fewer values than the cap on values.
  std::string yaml = "name: a\nsteps:\n  - name: s\n    uses: echo\n    with:\n";
  yaml += "      s: &s " + std::string(64 << 10, 'x') + "\n";
  yaml += "      l: &l [*s";
  for (int j = 1; j < 100; ++j) yaml += ", *s";
  yaml += "]\n      m: [*l, *l, *l, *l, *l, *l, *l, *l, *l, *l]\n";
  const auto errors = errors_of(yaml);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("expands to more than 16 MiB of text (through aliases?)") !=
        std::string::npos);
}

TEST_CASE("the version is a stable hash of the text", "[loader]") {
  CHECK(definition_version("") == "cbf29ce484222325");
  CHECK(definition_version("a") == "af63dc4c8601ec8c");
  const std::string v = definition_version(kFull);
  CHECK(v.size() == 16);
  CHECK(v.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(load_ok(kFull).version == v);
  std::string changed = kFull;
  changed.back() = ' ';
  CHECK(load_ok(changed).version != v);
}

TEST_CASE("load_workflow_file reads the file and names it in errors", "[loader]") {
  const auto dir =
      std::filesystem::temp_directory_path() / ("saga-loader-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string good = (dir / "good.yaml").string();
  const std::string bad = (dir / "bad.yaml").string();
  std::ofstream(good) << kFull;
  std::ofstream(bad) << "name: x\nsteps: []\n";

  auto d = load_workflow_file(good, test_schemas);
  REQUIRE(d);
  CHECK(d->file == good);
  CHECK(d->source == kFull);

  auto e = load_workflow_file(bad, test_schemas);
  REQUIRE_FALSE(e);
  CHECK(e.error().message == bad + ":2:8: \"steps\" must list at least one step");

  auto as_dir = load_workflow_file(dir.string(), test_schemas);
  REQUIRE_FALSE(as_dir);
  CHECK(as_dir.error().message ==
        dir.string() + ": is a directory, not a workflow file; name a .yaml file in it");

  const std::string missing = (dir / "missing.yaml").string();
  auto m = load_workflow_file(missing, test_schemas);
  REQUIRE_FALSE(m);
  CHECK(m.error().code == ErrorCode::not_found);
  CHECK(m.error().message ==
        missing + ": cannot read the workflow file: No such file or directory");
  std::filesystem::remove_all(dir);
}

TEST_CASE("schedules load with their values and defaults", "[loader][schedule]") {
  const Definition d = load_ok(R"(name: nightly
input:
  required: [source]
schedule:
  - cron: "0 3 * * *"
    timezone: Europe/Madrid
    input: {source: nightly}
    catchup: all
    overlap: allow
    max_catchup: 5
  - cron: "@hourly"
    input: {source: hourly}
  - cron: "*/1 * * * * *"
    input: {source: "${{ schedule.fire_time }}"}
steps:
  - name: a
    uses: echo
    with: {at: "${{ schedule.fire_time }}"}
)");
  REQUIRE(d.schedules.size() == 3);
  CHECK(d.schedules[0].cron == "0 3 * * *");
  CHECK(d.schedules[0].timezone == "Europe/Madrid");
  CHECK(d.schedules[0].input == json{{"source", "nightly"}});
  CHECK(d.schedules[0].catchup == Catchup::all);
  CHECK(d.schedules[0].overlap == Overlap::allow);
  CHECK(d.schedules[0].max_catchup == 5);
  CHECK(d.schedules[1].timezone == "UTC");
  CHECK(d.schedules[1].catchup == Catchup::latest);
  CHECK(d.schedules[1].overlap == Overlap::skip);
  CHECK(d.schedules[1].max_catchup == 100);
  CHECK(load_ok("name: a\nschedule: []\nsteps: [{name: a, uses: noop}]\n").schedules.empty());
}

TEST_CASE("schedule errors point at the line and column", "[loader][schedule]") {
  check_cases({
      {"not a list",
       "name: wf\nschedule: {cron: \"0 3 * * *\"}\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:2:11: \"schedule\" must be a list of schedules such as - cron: \"0 3 * * *\", "
        "not a mapping"}},
      {"entry not a mapping",
       "name: wf\nschedule:\n  - \"0 3 * * *\"\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:3:5: schedule 1 must be a mapping with \"cron\", not the string \"0 3 * * *\""}},
      {"no cron",
       "name: wf\nschedule:\n  - timezone: UTC\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:3:5: schedule 1 has no \"cron\"; write when it fires, such as cron: \"0 3 * * "
        "*\""}},
      {"unknown key",
       "name: wf\nschedule:\n  - cron: \"0 3 * * *\"\n    tz: UTC\nsteps: [{name: a, uses: "
       "noop}]\n",
       {"wf.yaml:4:5: unknown key \"tz\" in schedule 1; allowed keys: cron, timezone, input, "
        "catchup, overlap, max_catchup"}},
      {"hour out of range, quoted",
       "name: wf\nschedule:\n  - cron: \"0 25 * * *\"\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:3:14: bad cron expression \"0 25 * * *\" in schedule 1: cron field hour: 25 is "
        "out of range 0-23"}},
      {"bad month name, plain scalar, second schedule",
       "name: wf\nschedule:\n  - cron: \"@daily\"\n  - cron: 0 0 * FOO *\n"
       "steps: [{name: a, uses: noop}]\n",
       {"wf.yaml:4:17: bad cron expression \"0 0 * FOO *\" in schedule 2: cron field month: "
        "\"FOO\" is not a number; months are 1-12 or JAN-DEC"}},
      {"wrong number of fields",
       "name: wf\nschedule:\n  - cron: \"0 3 * *\"\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:3:12: bad cron expression \"0 3 * *\" in schedule 1: a cron expression has 5 "
        "fields (minute hour day-of-month month day-of-week), 6 with leading seconds, or is a "
        "macro such as @daily; this one has 4"}},
      {"never fires",
       "name: wf\nschedule:\n  - cron: \"0 0 30 2 *\"\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:3:11: cron expression \"0 0 30 2 *\" in schedule 1 never fires (no such date); "
        "check the day and month fields"}},
      {"unknown time zone",
       "name: wf\nschedule:\n  - cron: \"0 3 * * *\"\n    timezone: Europe/Atlantis\n"
       "steps: [{name: a, uses: noop}]\n",
       {"wf.yaml:4:15: unknown time zone \"Europe/Atlantis\" in schedule 1; use a name from the "
        "tz database, such as Europe/Berlin, America/New_York or UTC"}},
      {"bad policies",
       "name: wf\nschedule:\n  - cron: \"0 3 * * *\"\n    catchup: some\n    overlap: queue\n"
       "    max_catchup: 0\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:4:14: \"catchup\" of schedule 1 must be none, latest or all, not \"some\"",
        "wf.yaml:5:14: \"overlap\" of schedule 1 must be skip or allow, not \"queue\"",
        "wf.yaml:6:18: \"max_catchup\" of schedule 1 must be a whole number from 1 to "
        "10000, not 0"}},
      {"max_catchup past the bound",
       "name: wf\nschedule:\n  - cron: \"* * * * *\"\n    catchup: all\n    max_catchup: 10001\n"
       "steps: [{name: a, uses: noop}]\n",
       {"wf.yaml:5:18: \"max_catchup\" of schedule 1 must be a whole number from 1 to "
        "10000, not 10001"}},
      {"input not a mapping",
       "name: wf\nschedule:\n  - cron: \"0 3 * * *\"\n    input: [1]\n"
       "steps: [{name: a, uses: noop}]\n",
       {"wf.yaml:4:12: \"input\" of schedule 1 must be a mapping, not a list"}},
      {"input uses what a fire does not know",
       "name: wf\nschedule:\n  - cron: \"0 3 * * *\"\n    input: {at: [\"${{ input.a }}\"]}\n"
       "steps: [{name: a, uses: noop}]\n",
       {"wf.yaml:4:12: \"input\" of schedule 1: template ${{ input.a }} cannot be used in a "
        "schedule's input, which can use schedule.fire_time, instance.id and workflow.name"}},
      {"input lacks required keys",
       "name: wf\ninput: {required: [a, b]}\nschedule:\n  - cron: \"0 3 * * *\"\n"
       "    input: {a: 1}\n  - cron: \"0 4 * * *\"\nsteps: [{name: a, uses: noop}]\n",
       {"wf.yaml:5:12: the input of schedule 1 lacks required input keys: b",
        "wf.yaml:6:5: the input of schedule 2 lacks required input keys: a, b"}},
      {"a template in a key of a schedule's input",
       "name: wf\nschedule:\n  - cron: \"0 3 * * *\"\n    input: {\"${{ workflow.name }}\": 1}\n"
       "steps: [{name: a, uses: noop}]\n",
       {"wf.yaml:4:12: the key \"${{ workflow.name }}\" holds a template, and keys are not "
        "rendered; use a fixed key and put the template in its value"}},
      {"templates in keys of with:, nested too",
       "name: wf\nsteps:\n  - name: s\n    uses: echo\n    with:\n      \"${{ input.k }}\": 1\n"
       "      headers: {\"x-${{ input.h }}\": v}\n",
       {"wf.yaml:6:7: the key \"${{ input.k }}\" holds a template, and keys are not rendered; use "
        "a fixed key and put the template in its value",
        "wf.yaml:7:17: the key \"x-${{ input.h }}\" holds a template, and keys are not rendered; "
        "use a fixed key and put the template in its value"}},
      {"bad schedule template field",
       "name: wf\nsteps:\n  - name: s\n    uses: echo\n    with: {x: \"${{ schedule.time }}\"}\n",
       {"wf.yaml:5:15: template ${{ schedule.time }}: the only schedule field is fire_time "
        "(${{ schedule.fire_time }})"}},
  });
}

TEST_CASE("a byte that is not UTF-8 is pointed at; UTF-8 and UTF-16 files load", "[loader]") {
  CHECK(errors_of("name: latin1\ndescription: \"caf\xe9\"\nsteps: []\n") ==
        std::vector<std::string>{"wf.yaml:2:18: this is not UTF-8 text (a byte of another "
                                 "encoding); save the file as UTF-8"});
  // An overlong encoding of '/' is not UTF-8 either.
  CHECK(errors_of("name: x\xc0\xaf\nsteps: []\n").front().starts_with("wf.yaml:1:8: this is not"));
  const std::string text =
      "name: wide\ndescription: \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82\"\n"
      "steps:\n  - {name: s, uses: noop}\n";
  CHECK(load_ok(text).description == "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x99\x82");
  // The same workflow in UTF-16LE with a byte order mark (ASCII only, for brevity).
  std::string utf16 = "\xff\xfe";
  for (char c : std::string("name: wide\nsteps:\n  - {name: s, uses: noop}\n")) {
    utf16.push_back(c);
    utf16.push_back('\0');
  }
  CHECK(load_ok(utf16).name == "wide");
}

TEST_CASE("a workflow has at most 1000 steps", "[loader]") {
  std::string yaml = "name: a\nsteps:\n";
  for (int i = 0; i < 1000; ++i) yaml += "  - {name: s" + std::to_string(i) + ", uses: noop}\n";
  CHECK(load_ok(yaml).steps.size() == 1000);
  yaml += "  - {name: one-more, uses: noop}\n";
  CHECK(errors_of(yaml) ==
        std::vector<std::string>{"wf.yaml:3:3: \"steps\" lists 1001 steps, more than the 1000 a "
                                 "workflow may have; split it into workflows"});
}

TEST_CASE("aliased keys count against the 16 MiB of text too", "[loader]") {
  std::string yaml = "name: a\nsteps:\n  - name: s\n    uses: echo\n    with:\n";
  yaml += "      s: &s " + std::string(64 << 10, 'k') + "\n      l: [{*s : 1}";
  for (int j = 1; j < 300; ++j) yaml += ", {*s : 1}";
  yaml += "]\n";
  const auto errors = errors_of(yaml);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("expands to more than 16 MiB of text") != std::string::npos);
}

TEST_CASE("a version from the journal loads without the limits on new files", "[loader]") {
  // What an earlier sagad accepted: Latin-1 text, more than 1,000 steps, a timeout past 36500d.
  std::string yaml = "name: old\ndescription: \"caf\xe9\"\ntimeout: 99999d\nsteps:\n";
  for (int i = 0; i < 1001; ++i) yaml += "  - {name: s" + std::to_string(i) + ", uses: noop}\n";
  CHECK(errors_of(yaml).size() == 1);  // as a file: the first problem, the byte, stops it
  auto r = load_workflow(yaml, "<journal>", nullptr, /*journaled=*/true);
  REQUIRE(r);
  CHECK(r->steps.size() == 1001);
  CHECK(r->timeout == Millis{std::chrono::days(99999)});

  // A step name that a template could not name was accepted before, and runs.
  auto named = load_workflow("name: old\nsteps:\n  - {name: x.output, uses: noop}\n", "<journal>",
                             nullptr, /*journaled=*/true);
  REQUIRE(named);
  CHECK(named->steps[0].name == "x.output");
}

TEST_CASE("step names with dots, output among them, are named in templates", "[loader]") {
  // "output" as the first part, or inside a part, leaves steps.NAME.output unambiguous.
  const Definition d = load_ok(R"(name: dotted
steps:
  - {name: output, uses: noop}
  - {name: output.v2, uses: noop}
  - {name: a.outputs, uses: noop}
  - name: use
    uses: echo
    with: {x: "${{ steps.output.output.a }}${{ steps.output.v2.output.b }}${{ steps.a.outputs.output.c }}"}
)");
  CHECK(d.steps.size() == 4);
}
