#include "plugin_host/plugin_registry.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

using namespace saga;

namespace {

const std::string kTesting = std::string(SAGA_PLUGIN_DIR) + "/saga-testing.so";
std::string fixture(const char* name) {
  return std::string(SAGA_FIXTURE_DIR) + "/" + name + ".so";
}

AttemptReply run(const StepTypeInfo& type, const std::string& params, uint32_t attempt = 1,
                 saga_phase phase = SAGA_PHASE_RUN) {
  AttemptRequest r;
  r.instance_id = "i-1";
  r.workflow = "wf";
  r.step = "s";
  r.idempotency_key = "i-1/s";
  r.attempt = attempt;
  r.phase = phase;
  r.params_json = params;
  std::atomic<bool> cancelled{false};
  return PluginRegistry::invoke(type, r, cancelled, nullptr);
}

}  // namespace

TEST_CASE("the testing plugin loads with its step types and their params") {
  PluginRegistry reg;
  REQUIRE(reg.load_file(kTesting).has_value());
  REQUIRE(reg.plugins().size() == 1);
  CHECK(reg.plugins()[0].name == "testing");
  CHECK(reg.plugins()[0].abi_major == SAGA_ABI_MAJOR);
  for (const char* name : {"testing.noop", "testing.echo", "testing.fail", "testing.sleep"}) {
    REQUIRE(reg.find(name) != nullptr);
    CHECK(reg.find(name)->can_compensate);
  }
  const StepTypeInfo* sleep = reg.find("testing.sleep");
  REQUIRE(sleep->params.size() == 1);
  CHECK(sleep->params[0].name == "ms");
  CHECK(sleep->params[0].required);
  CHECK(sleep->params[0].type == SAGA_PARAM_INTEGER);
  CHECK(reg.find("testing.echo")->accepts_any_params);
  CHECK(reg.find("testing.nope") == nullptr);
}

TEST_CASE("testing step types behave as documented") {
  PluginRegistry reg;
  REQUIRE(reg.load_file(kTesting).has_value());
  auto noop = run(*reg.find("testing.noop"), "{}");
  CHECK(noop.outcome == SAGA_OUTCOME_OK);
  CHECK(noop.data == "{}");
  auto echo = run(*reg.find("testing.echo"), R"({"a":1,"b":"x"})");
  CHECK(nlohmann::json::parse(echo.data) == nlohmann::json{{"a", 1}, {"b", "x"}});
  const StepTypeInfo& fail = *reg.find("testing.fail");
  CHECK(run(fail, R"({"times":2})", 1).outcome == SAGA_OUTCOME_RETRY);
  CHECK(run(fail, R"({"times":2})", 2).outcome == SAGA_OUTCOME_RETRY);
  CHECK(run(fail, R"({"times":2})", 3).outcome == SAGA_OUTCOME_OK);
  auto permanent = run(fail, R"({"permanent":true,"message":"nope"})");
  CHECK(permanent.outcome == SAGA_OUTCOME_FAIL);
  CHECK(permanent.data == "nope");
  CHECK(run(fail, R"({"compensate_fails":1})", 1, SAGA_PHASE_COMPENSATE).outcome ==
        SAGA_OUTCOME_RETRY);
  CHECK(run(fail, R"({"compensate_fails":1})", 2, SAGA_PHASE_COMPENSATE).outcome ==
        SAGA_OUTCOME_OK);
}

TEST_CASE("testing.sleep stops soon after cancellation") {
  PluginRegistry reg;
  REQUIRE(reg.load_file(kTesting).has_value());
  AttemptRequest r;
  r.params_json = R"({"ms": 60000})";
  std::atomic<bool> cancelled{false};
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    cancelled = true;
  });
  auto t0 = std::chrono::steady_clock::now();
  auto reply = PluginRegistry::invoke(*reg.find("testing.sleep"), r, cancelled, nullptr);
  canceller.join();
  CHECK(reply.outcome == SAGA_OUTCOME_RETRY);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
}

TEST_CASE("a plugin for another ABI major is refused, naming both versions and the file") {
  PluginRegistry reg;
  auto r = reg.load_file(fixture("abi2_plugin"));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("abi2_plugin.so") != std::string::npos);
  CHECK(r.error().message.find("ABI 2.3") != std::string::npos);
  CHECK(r.error().message.find("ABI 1.x") != std::string::npos);
  CHECK(reg.plugins().empty());
}

TEST_CASE("a shared object that is not a saga plugin is refused") {
  PluginRegistry reg;
  auto r = reg.load_file(fixture("not_a_plugin"));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("not a saga plugin") != std::string::npos);
  auto missing = reg.load_file("/nonexistent/x.so");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().message.find("/nonexistent/x.so") != std::string::npos);
}

TEST_CASE("a duplicate step type name is refused naming both files; the first keeps working") {
  PluginRegistry reg;
  REQUIRE(reg.load_file(kTesting).has_value());
  auto r = reg.load_file(fixture("duplicate_plugin"));
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().message.find("testing.noop") != std::string::npos);
  CHECK(r.error().message.find("duplicate_plugin.so") != std::string::npos);
  CHECK(r.error().message.find("saga-testing.so") != std::string::npos);
  CHECK(reg.plugins().size() == 1);
  CHECK(run(*reg.find("testing.noop"), "{}").outcome == SAGA_OUTCOME_OK);
}

TEST_CASE("a step that throws is a transient failure carrying the exception text") {
  PluginRegistry reg;
  REQUIRE(reg.load_file(fixture("throwing_plugin")).has_value());
  auto reply = run(*reg.find("throwing.step"), "{}");
  CHECK(reply.outcome == SAGA_OUTCOME_RETRY);
  CHECK(reply.data.find("database exploded") != std::string::npos);
}

TEST_CASE("load_directory loads the good plugins and reports the bad ones") {
  PluginRegistry reg;
  auto errors = reg.load_directory(SAGA_FIXTURE_DIR);
  CHECK(errors.size() == 2);  // abi2 and not_a_plugin; duplicate_plugin and throwing load
  CHECK(reg.find("throwing.step") != nullptr);
  CHECK(reg.load_directory("/nonexistent-dir").size() == 1);
}
