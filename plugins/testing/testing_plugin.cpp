// The `testing` plugin: deterministic step types for tests, demos and benchmarks (DESIGN §6.1).
// Every one of them can compensate (a compensation that succeeds), so demos can show undo.
#include <saga/step.hpp>

#include <chrono>
#include <thread>

namespace {

using saga::Context;
using saga::Param;
using saga::ParamType;
using saga::Result;

class Noop : public saga::Step {
 public:
  Result run(Context&) override { return Result::ok(); }
  Result compensate(Context&) override { return Result::ok(); }
};

class Echo : public saga::Step {
 public:
  Result run(Context& ctx) override { return Result::ok(ctx.params()); }
  Result compensate(Context& ctx) override { return Result::ok(ctx.params()); }
};

// Fails the first `times` attempts transiently, or every attempt with `permanent`.
class Fail : public saga::Step {
 public:
  Result run(Context& ctx) override {
    std::string message = ctx.param<std::string>("message", "testing.fail failed as asked");
    if (ctx.param<bool>("permanent", false)) return Result::fail(message);
    if (ctx.attempt() <= ctx.param<uint32_t>("times", 0)) {
      return Result::retry(message + " (attempt " + std::to_string(ctx.attempt()) + ")");
    }
    return Result::ok({{"attempt", ctx.attempt()}});
  }
  Result compensate(Context& ctx) override {
    if (ctx.param<bool>("compensate_permanent", false)) {
      return Result::fail("compensation failed as asked");
    }
    if (ctx.attempt() <= ctx.param<uint32_t>("compensate_fails", 0)) {
      return Result::retry("compensation failed as asked (attempt " +
                           std::to_string(ctx.attempt()) + ")");
    }
    return Result::ok();
  }
};

// Sleeps `ms`, waking every few milliseconds to honour cancellation.
class Sleep : public saga::Step {
 public:
  Result run(Context& ctx) override {
    auto ms = ctx.param<int64_t>("ms", 0);
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < until) {
      if (ctx.cancelled()) return Result::retry("cancelled");
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int64_t>(ms, 5)));
    }
    return Result::ok({{"slept_ms", ms}});
  }
  Result compensate(Context&) override { return Result::ok(); }
};

saga::StepType compensating(saga::StepType t) {
  t.can_compensate = true;
  return t;
}

saga::StepType echo_type() {
  auto t = compensating(saga::step_type<Echo>(
      "testing.echo", "Succeeds with its rendered parameters as output; takes any parameters"));
  t.accepts_any_params = true;
  return t;
}

}  // namespace

SAGA_PLUGIN(
    "testing", "1.0",
    {compensating(saga::step_type<Noop>("testing.noop", "Succeeds at once with output {}")),
     echo_type(),
     compensating(saga::step_type<Fail>(
         "testing.fail", "Fails transiently the first N attempts, or for good",
         {Param{"times", ParamType::integer, false, 0,
                "fail this many attempts transiently, then succeed"},
          Param{"permanent", ParamType::boolean, false, false, "fail every attempt for good"},
          Param{"message", ParamType::string, false, nullptr, "the error message"},
          Param{"compensate_fails", ParamType::integer, false, 0,
                "fail this many compensation attempts transiently"},
          Param{"compensate_permanent", ParamType::boolean, false, false,
                "fail the compensation for good"}})),
     compensating(saga::step_type<Sleep>("testing.sleep", "Sleeps, honouring cancellation",
                                         {Param{"ms", ParamType::integer, true, nullptr,
                                                "how long to sleep, in milliseconds"}}))});
